"""Renders collector YAML / OTTL from the same rules as the in-process classifier."""

from __future__ import annotations

from otel_ext.classify.engine import RuleSet
from otel_ext.collector.render import render_classify_yaml, render_statements
from otel_ext.collector.templates import AGENT_FILELOG, GATEWAY_FAILOVER


def render_configs(ruleset: RuleSet) -> tuple[dict[str, str], list[str]]:
    """The shipped files (name -> text) and the rules that could not be rendered."""
    classify, unsupported = render_classify_yaml(ruleset)
    return {"classify.yaml": classify, "gateway-failover.yaml": GATEWAY_FAILOVER,
            "agent-filelog.yaml": AGENT_FILELOG}, unsupported


__all__ = ["render_classify_yaml", "render_configs", "render_statements"]
