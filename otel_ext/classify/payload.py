"""Payload inspection: WAF-style decoding and attack patterns over a record's request fields.

What it reads: ``url.path``, ``url.query``, ``url.full``, ``http.request.body.content``,
``http.request.referrer`` and ``user_agent.original`` (attributes, or what the access-line parser
found). What it returns: the first :class:`Hit` — attack family, pattern id and the *name* of the
field it was found in (never the payload itself).

How it decodes (the same steps, in the same order, are rendered as OTTL for the collector, so the
collector labels exactly alike): lower-case; then two passes of ``+`` to space (first pass only),
``\\xNN`` / ``\\u00NN`` / ``&#xNN;`` / ``%u00NN`` to ``%NN``, ``%25…`` collapsed, overlong UTF-8 and
full-width forms, every ``%NN`` of ASCII (``%00`` dropped, control characters to a space), HTML
entities; finally SQL comments to a space and runs of white space to one space. Every step is a
literal or RE2-compatible regex replacement with identical semantics in Python ``re`` and Go RE2.

The byte bound cannot be used to evade: a field longer than :data:`BOUND_BYTES` (UTF-8) is not
scanned in part — it is itself a hit (family ``oversize``), so padding an attack only changes
which security label it gets. Matching runs on RE2 (google-re2, linear time, the collector's own
engine); decoding regexes have no nested repetition, so both are linear in the field length.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from operator import methodcaller
from typing import Any, cast

try:  # the collector's regex engine; optional: Python's re gives the same answers, slower
    import re2 as _re2
except ImportError:  # pragma: no cover - google-re2 is a dependency; this is a fallback
    _re2 = None

BOUND_BYTES = 8192
"""Longest field (UTF-8 bytes) that is scanned; a longer one is reported as ``oversize``."""

# Fields inspected, in order: (attribute name, kind). Kinds select the pattern families.
INSPECTED_FIELDS: tuple[tuple[str, str], ...] = (
    ("url.path", "path"),
    ("url.query", "query"),
    ("url.full", "url"),
    ("http.request.body.content", "body"),
    ("http.request.referrer", "header"),
    ("user_agent.original", "agent"),
)


@dataclass(frozen=True)
class Family:
    """One attack family: the labels its hits get."""

    name: str
    action: str  # OWASP name, or an otel-ext extension in the same style
    category: str  # ECS rule.category
    owasp: bool  # True when ``action`` is in the OWASP vocabulary
    description: str
    refused_only: bool = False  # a hit counts only when the server refused the request (4xx/5xx)


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("oversize", "malicious_extraneous", "oversized_input", True,
           f"a request field longer than {BOUND_BYTES} bytes (not scanned: padding is no evasion)"),
    Family("attack_tool", "malicious_attack_tool", "attack_tool", True, "user agent of a known attack tool"),
    Family("sensitive_file", "malicious_direct_reference", "sensitive_file_probe", True,
           "probe for a secret, VCS, backup or admin-panel path"),
    Family("template", "malicious_template_injection", "template_injection", False,
           "server-side template / expression injection (incl. JNDI lookups)"),
    Family("ssrf", "malicious_ssrf", "server_side_request_forgery", False,
           "URL to a loopback, link-local, metadata or private address, or a non-web scheme"),
    Family("rfi", "malicious_rfi", "remote_file_inclusion", False, "remote file inclusion"),
    Family("path_traversal", "malicious_path_traversal", "path_traversal", False,
           "path traversal / local file inclusion"),
    Family("cmdi", "malicious_cmdi", "command_injection", False, "OS command injection"),
    Family("code_injection", "malicious_code_injection", "code_injection", False,
           "PHP / JavaScript / server-side code injection, XML entities (XXE), LDAP filters"),
    Family("xss", "malicious_xss", "cross_site_scripting", False, "cross-site scripting"),
    Family("sqli", "malicious_sqli", "sql_injection", True, "SQL injection"),
    Family("archive_probe", "malicious_direct_reference", "sensitive_file_probe", True,
           "request for an archive the server does not have (a scanner guessing backup names)", refused_only=True),
    Family("endpoint_probe", "malicious_direct_reference", "sensitive_file_probe", True,
           "request for a management endpoint the server does not have (Spring Boot 1.x /env, /heapdump at the "
           "root)", refused_only=True),
)}
WEAK_FAMILIES = frozenset(f.name for f in FAMILIES.values() if f.refused_only)
"""Families whose hit gives way to any other hit in a later field (see PayloadInspector.inspect_maps)."""


@dataclass(frozen=True)
class Pattern:
    id: str
    family: str
    kinds: frozenset[str]
    regex: str
    name: str


_ALL = frozenset({"path", "query", "url", "body", "header", "agent"})
_PARAMS = frozenset({"query", "url", "body", "header"})
_PATHS = frozenset({"path", "url"})
_AGENT = frozenset({"agent"})


def _p(pid: str, family: str, kinds: frozenset[str], regex: str, name: str) -> Pattern:
    return Pattern(pid, family, kinds, regex, name)


# High-risk PHP function names: the OWASP Core Rule Set's php-function-names-933150.data
# (coreruleset 2cbd1d0, Apache-2.0), matched as a call (`name(`, `name (`, `name #c (`).
_PHP_FUNCTIONS = (
    "array_diff_uassoc|array_diff_ukey|array_filter|array_intersect_uassoc|array_intersect_ukey|"
    "array_key_exists|array_map|array_push|array_reduce|array_shift|array_udiff|array_udiff_assoc|"
    "array_udiff_uassoc|array_uintersect|array_uintersect_assoc|array_uintersect_uassoc|array_values|"
    "base64_decode|base64_encode|bson_decode|bson_encode|bzdecompress|bzopen|call_user_func|"
    "class_exists|convert_uuencode|curl_exec|curl_file_create|curl_init|debug_backtrace|dirname|"
    "error_reporting|escapeshellarg|escapeshellcmd|exif_imagetype|exif_read_data|exif_tagname|"
    "exif_thumbnail|fclose|file_exists|file_get_contents|finfo_open|fsockopen|ftp_connect|ftp_get|"
    "ftp_nb_get|ftp_nb_put|ftp_put|function_exists|fwrite|get_cfg_var|get_class|get_class_methods|"
    "get_class_vars|get_current_user|get_defined_constants|get_defined_functions|get_defined_vars|"
    "get_meta_tags|getcwd|getenv|getimagesize|getlastmod|getmygid|getmyinode|getmypid|getmyuid|"
    "gzcompress|gzdecode|gzdeflate|gzencode|gzfile|gzinflate|gzopen|gzread|gzuncompress|gzwrite|"
    "hash_file|hash_hmac_file|hash_update_file|header_register_callback|hex2bin|highlight_file|"
    "html_entity_decode|htmlentities|htmlspecialchars|htmlspecialchars_decode|image2wbmp|"
    "imagecreatefromgif|imagecreatefromjpeg|imagecreatefrompng|imagecreatefromwbmp|"
    "imagecreatefromxbm|imagecreatefromxpm|imagegd|imagegd2|ini_get|ini_get_all|ini_set|iptcembed|"
    "is_array|is_dir|is_executable|is_file|is_null|is_numeric|is_object|is_readable|is_writable|"
    "is_writeable|iterator_apply|json_decode|json_encode|mb_ereg|mb_ereg_match|mb_ereg_replace|"
    "mb_ereg_replace_callback|mb_eregi|mb_eregi_replace|mb_parse_str|md5_file|method_exists|"
    "move_uploaded_file|mysql_query|number_format|ob_clean|ob_end_clean|ob_end_flush|ob_flush|"
    "ob_get_clean|ob_get_contents|ob_get_flush|ob_start|odbc_connect|odbc_exec|odbc_execute|"
    "odbc_result|odbc_result_all|parse_ini_file|parse_str|parse_url|pfsockopen|pg_connect|pg_execute|"
    "pg_prepare|pg_query|php_strip_whitespace|php_uname|phpversion|posix_getegid|posix_geteuid|"
    "posix_getgid|posix_getlogin|posix_getpwnam|posix_getpwuid|posix_kill|posix_mkfifo|posix_mknod|"
    "posix_ttyname|preg_match|preg_match_all|preg_replace|preg_replace_callback|"
    "preg_replace_callback_array|preg_split|print_r|proc_close|proc_get_status|proc_nice|proc_open|"
    "proc_terminate|putenv|rawurldecode|rawurlencode|read_exif_data|readdir|readgzfile|"
    "register_shutdown_function|register_tick_function|rename_function|runkit_constant_add|"
    "runkit_constant_redefine|runkit_function_add|runkit_function_copy|runkit_function_redefine|"
    "runkit_function_rename|runkit_method_add|runkit_method_copy|runkit_method_redefine|"
    "runkit_method_rename|session_set_save_handler|session_start|set_error_handler|"
    "set_exception_handler|set_include_path|set_magic_quotes_runtime|setdefaultstub|settype|"
    "sha1_file|shell_exec|show_source|simplexml_load_file|simplexml_load_string|socket_connect|"
    "socket_create|spl_autoload_register|sqlite_array_query|sqlite_create_aggregate|"
    "sqlite_create_function|sqlite_exec|sqlite_open|sqlite_popen|sqlite_query|sqlite_single_query|"
    "sqlite_unbuffered_query|str_replace|stream_context_create|stream_socket_client|stripcslashes|"
    "stripslashes|strlen|strpos|strrev|strtolower|strtotime|strtoupper|uasort|ucfirst|uksort|"
    "urldecode|urlencode|var_dump|zlib_decode"
)

_TOOLS = (
    "sqlmap|nikto|nmap|masscan|zgrab|w3af|acunetix|netsparker|arachni|skipfish|wpscan|whatweb|dirbuster|"
    "gobuster|feroxbuster|wfuzz|fuzz faster|ffuf|nuclei|openvas|nessus|qualysguard|n-stalker|appspider|"
    "ironwasp|webbandit|webshag|wapiti|commix|havij|sqlninja|jsql|ghauri|xsstrike|xsser|tplmap|sstimap|"
    "dotdotpwn|fimap|lfisuite|lfimap|kadimus|joomscan|droopescan|cmsmap|wprecon|wpprobe|jbrofuzz|jorgee|"
    "libwhisker|morfeus|zmeu|bfac|detectify|whatwaf|hexometer|nettacker|tsunamisecurityscanner|"
    "sysscan|securityagent|netlab360|l9explore|l9tcpid|shortscan|graphw00f|graphql-cop|hydra|appscan|"
    "burp ?suite|owasp zap|zaproxy|panoptic|mozlila|mozilla/5\\.g|bewica-security-scan|betabot|"
    "sitelockspider|vega/|trufflehog|noseyparker|yeswehack|tinja|medusa|dirb/|httprint|paros|webinspect|"
    "brutus|grabber|dominator|metasploit|nstalker|pangolin|bsqlbf|grendel-scan|blackwidow|"
    "struts-pwn|log4j-scan|interactsh|python-xss|xenu|(^|[ (;])sf/[0-9]"
)

_TABLE: tuple[Pattern, ...] = (
    # --- attack tools (user agent) ---------------------------------------------------------------
    _p("tool.user_agent", "attack_tool", _AGENT, f"({_TOOLS})", "attack-tool user agent"),
    # --- sensitive files and admin panels (path) -------------------------------------------------
    _p("probe.dotfile", "sensitive_file", _PATHS,
       r"/\.(env|git|svn|hg|bzr|cvs|ds_store|aws|ssh|docker|kube|npmrc|pypirc|netrc|pgpass|my\.cnf|"
       r"htaccess|htpasswd|htdigest|bash_history|bashrc|zsh_history|mysql_history|psql_history|gitconfig|"
       r"git-credentials|vscode|idea|config|travis\.yml|gitlab-ci\.yml|dockerenv|boto|s3cfg|wp-config)"
       r"([/.~_-]|$|\?| )",
       "dot-file / VCS / credentials probe"),
    _p("probe.backup", "sensitive_file", _PATHS,
       r"\.(bak|backup|bkp|old|orig|save|swp|swo|sql|sqlite|db|mdb|dump|"
       r"key|pem|p12|pfx|jks|kdbx|log|ini|conf|cfg|inc)(~|\.\d+)?($|\?| )|~($|\?| )|"
       r"/(backups?|bak|old|site|www|wwwroot|web|html|htdocs|public_html|db|database|dump|sql|root|temp|tmp)"
       r"\.(tar|tgz|tar\.gz|tar\.bz2|zip|gz|bz2|7z|rar|war|jar)($|\?| )",
       "backup, archive, key or config file"),
    _p("probe.admin", "sensitive_file", _PATHS,
       r"/(wp-login\.php|wp-admin|wp-config|wp-content/plugins/|wp-includes/|xmlrpc\.php|phpmyadmin|pma|"
       r"myadmin|mysqladmin|adminer(\.php)?|administrator/index|admin\.php|server-status|server-info|"
       r"phpinfo\.php|info\.php|test\.php|shell\.php|cmd\.php|c99\.php|r57\.php|webshell|"
       r"actuator(/[a-z]*)?|jmx-console|web-console|manager/html|invoker/|solr/admin|cgi-bin/|"
       r"console/login|owa/auth|vendor/phpunit|eval-stdin\.php|boaform|hnap1|\.well-known/acme-challenge/\.\.|"
       r"etc/passwd|web\.config|elmah\.axd|trace\.axd|_profiler|telescope|horizon/api|debug/pprof|"
       r"config\.json|credentials\.json|id_rsa|database\.yml|settings\.py|local_settings\.py|_ignition|"
       r"api/jsonws|wls-wsat|gponform|containers/json|docker-compose\.ya?ml|sftp-config\.json|"
       r"api/v1/namespaces/(kube-system|kube-public)|api/v1/namespaces/[a-z0-9.-]{1,63}/(secrets|pods|"
       r"configmaps|serviceaccounts)|autodiscover/autodiscover\.json|remote/fgt_lang|setup\.cgi)(/|$|\?| )",
       "admin panel or tool path of software the service does not run"),
    _p("probe.param", "sensitive_file", _PARAMS,
       r"\bxdebug_session_start=|\binvokefunction\b|\\think\\app\b",
       "debugger start or framework-exploit parameter (Xdebug, ThinkPHP)"),
    # --- template / expression injection ---------------------------------------------------------
    _p("template.jndi", "template", _ALL, r"\$\{ ?(jndi|\$\{|env:|sys:|java:|lower:|upper:|date:|ctx:|::-)",
       "JNDI / lookup expression (Log4Shell)"),
    _p("template.expression", "template", _ALL,
       r"(\{\{|\$\{|#\{|<%=?|\{%|\$\{\{|@\() ?[^}]{0,80}(\d ?[*+] ?\d|__[a-z]+__|\.(class|mro|subclasses|"
       r"globals|builtins|getruntime|forname|exec)\b|config\b|self\b|request\.|lipsum|cycler|joiner|"
       r"namespace|t\(java|new java|runtime|processbuilder|freemarker|velocity)|\{\$smarty\.",
       "template / expression-language injection"),
    # --- SSRF --------------------------------------------------------------------------------------
    _p("ssrf.internal", "ssrf", _PARAMS,
       r"[a-z][a-z0-9+.-]{1,10}:/{0,2}(\[[^]]{0,60}\]|"
       r"localhost|127\.|0\.0\.0\.0|0[0-7]{1,4}\.|0x[0-9a-f]{1,2}\.|0x[0-9a-f]{8}(/|$|:| )|\d{1,3}\.\d{5,}|\\\\|"
       r"0x7f|2130706433|017700000001|169\.254\.|metadata\.google|metadata\.azure|100\.100\.100\.200|"
       r"10\.\d|192\.168\.|172\.(1[6-9]|2\d|3[01])\.|0/|0:|0\.|\d{8,10}(/|$|:| ))|@ ?(127\.|localhost|169\.254|"
       r"0\.0\.0\.0|\[)|=localhost|\blocalhost4?(\.localdomain)?($|[:/&])|\b(localhost4|ipv6-localhost|host\.docker\.internal|kubernetes\.docker\.internal|"
       r"kubernetes\.default\.svc|localtest\.me|metadata\.google\.internal|metadata\.packet\.net|ip6-loopback|"
       r"gateway\.docker\.internal|host\.containers\.internal|lvh\.me)\b|://0[0-9]{9,}",
       "URL to loopback, link-local, metadata or private address"),
    _p("ssrf.scheme", "ssrf", _PARAMS, r"(^|[=( ])(gopher|dict|ldap|tftp|jar|netdoc|sftp)://",
       "non-web URL scheme"),
    # --- RFI -------------------------------------------------------------------------------------
    _p("rfi.ip", "rfi", _PARAMS, r"=(https?|ftps?)://\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}",
       "parameter value is a URL with an IP address"),
    _p("rfi.trailing", "rfi", _PARAMS, r"(https?|ftps?)://[^?& ]{1,200}\?( |$)",
       "URL with a trailing ? (inclusion truncation)"),
    _p("rfi.param", "rfi", _PARAMS,
       r"(include|inc|require|file|page|path|template|tpl|conf|config|dir|mod|module|load|src|"
       r"_conf\[[^]]{0,40}\]|mosconfig_absolute_path|_server\[document_root\])=(https?|ftps?)://",
       "URL in a file-inclusion parameter"),
    _p("rfi.bare_scheme", "rfi", _PARAMS, r"=(https?|ftps?|file)\?", "scheme with a trailing ?"),
    _p("rfi.userinfo", "rfi", _PARAMS,
       r"://[^ ?#&]{0,100}/:?[^ ?#&/]{0,40}@|://[^ /?#&]{1,100}@|\bjar:(https?|file):|\blocal_file://",
       "URL with user-info host confusion or a jar:/local_file: scheme"),
    _p("rfi.port_ftp", "rfi", _PARAMS, r"=(https?|ftps?)://[^/?#& ]{1,100}:[0-9]{2,5}(/|$)|=ftps?://",
       "URL with an explicit port, or an FTP URL, as a parameter value"),
    _p("rfi.script", "rfi", _PARAMS, r"(https?|ftps?)://[^?& ]{1,200}\.(txt|php|phtml|sh|pl|py|cgi|asp|jsp)\?",
       "remote script with query"),
    # --- command injection -----------------------------------------------------------------------
    _p("cmdi.chain", "cmdi", _ALL,
       r"([;|&`\n]|\$\(|\|\||&&) ?(\w+=\S* )?(/[a-z/]*)?(cat|ls|id|whoami|uname|ifconfig|ipconfig|"
       r"netstat|ps|wget|curl|nc|ncat|netcat|bash|sh|zsh|ksh|dash|csh|ping|nslookup|dig|host|echo|rm|"
       r"chmod|chown|python[23]?|perl|ruby|php|lua|node|telnet|ssh|scp|ftp|tftp|sleep|kill|killall|"
       r"touch|mkdir|cp|mv|head|tail|more|less|find|grep|awk|sed|base64|xxd|env|printenv|set|export|"
       r"powershell|cmd|net|type|dir|systeminfo|tasklist|reg|certutil|bitsadmin|whoami|hostname|passwd|"
       r"crontab|nohup|xterm|sudo|su|eval|exec|sort|tee|od|nl|rev|tac|time|uptime|w|who|last|"
       r"useradd|usermod|wall|mail|nmap|socat|openssl|gcc|cc|make|tar|zip|unzip|gzip|dd|mknod|"
       r"mkfifo|shutdown|reboot|halt|init|systemctl|service|sh\.exe|cmd\.exe)"
       r"([ <>;|&`'\"$)(]|$|\.exe)",
       "shell command after a separator"),
    _p("cmdi.substitution", "cmdi", _ALL, r"\$\( ?[a-z/]|`[a-z/][^`]{0,80}`|\$\{ifs|\$ifs\b|\$\{path:|\$\{home",
       "command substitution / $IFS"),
    _p("cmdi.evasion", "cmdi", _ALL,
       r"/[a-z?*]{0,8}\[[!^]?[a-z?*/-]{1,12}\][a-z?*]{0,8}|/[?*]{2,}|\{[a-z0-9$\"',/?.]{0,20},[a-z0-9$\"',/?.]{0,30}\}|"
       r"\$\{[a-z_#]{0,12}[#%:]|[a-z]\$[!_@*#?-][a-z/]|\b[a-z]{1,6}(''|\"\")[a-z]|'[a-z]{1,4}'[a-z]{2}|"
       r"[<>]\( ?[a-z)]|``|\(\) ?\{|\$\[[0-9]",
       "shell globbing, brace expansion or quoting evasion"),
    _p("cmdi.windows", "cmdi", _ALL,
       r"\bfor( /[lfdr])?( \"[^\"]{0,40}\")? %%?[a-z~/]{1,3} in ?\(|\bif( /i)?( not)? (exist|defined|errorlevel|"
       r"cmdextversion|%[a-z0-9]|\[|\"%)|\b(iwr|iwmi|iex|invoke-webrequest|invoke-expression|invoke-wmimethod|"
       r"start-process|new-object|downloadstring|downloadfile|get-wmiobject|set-executionpolicy)\b|"
       r"\bbcdboot\b|\bcertutil\b|\bbitsadmin\b|\bwmic\b|\brundll32\b|\bregsvr32\b|\bmshta\b|"
       r"%(systemroot|windir|comspec|programfiles|userprofile)%|\bnet (user|localgroup)\b",
       "Windows cmd / PowerShell"),
    _p("cmdi.more", "cmdi", _ALL,
       r"\bfor( ?/[a-z])* ?%[^ ]{1,20} in ?\(|\bif ?(/i)?( not)? [^&]{0,40}(==|\b(equ|neq|lss|leq|gtr|geq)\b)|"
       r"\b(sh|bash|ksh|zsh|dash|csh) -c\b|\balias [a-z+-]|\b(pip|npm|gem|apt|apt-get|aptitude|yum|apk) "
       r"install\b|&aptitude\b|\$\(\)|=(ls|whoami|uname|ifconfig|wget|curl|nc|bash|sh|zsh|ksh|python[0-9.]*|perl|"
       r"nslookup|bsdtar|powershell|cmd) [-/a-z.$\"']|\\n\.(shell|system|databases|tables|dump|import|load)\b|"
       r"\((ba|z|k|c)?sh\)|= (ehlo|helo|mail from:|rcpt to:|quit$|retr \d|apop |a\d{3} (examine|select|login|"
       r"fetch)|list \d|auth [a-z]|data$|help [a-z]|top \d)|\btime (sh|who|bsdtar|curl|wget)\b|\$\[\]|\$\(\(|"
       r"\$shell\b|\$[a-z_]{1,10} -c\b|\bbusybox\b|;\.sh\b|\|vi\b|\|\$[a-z_]{1,10} [a-z]|\baa-disable\b|"
       r"\brc [a-z0-9_-]{1,40}\.sh\b|;\$[a-z_]{1,10} [a-z]|(^|[=&])~[+-]?[0-9]?($|&)|\{[a-z],-|\{,[a-z]|"
       r"(^|[=&])!(-[0-9]|!)|;at [0-9]",
       "Windows FOR/IF, shell -c, package installs, protocol (SMTP/IMAP/POP) injection"),
    _p("cmdi.shell_path", "cmdi", _ALL,
       r"\bs?bin/[a-z]|/usr/bin/|/sbin/|\bcmd(\.exe)? ?/[ck]\b|\bpowershell(\.exe)?\b|\bnc(\.exe)? -[elvnp]|"
       r"\bwhich (nc|ncat|netcat|python[23]?|perl|bash|curl|wget|gcc|socat)\b|"
       # a parameter value (query, form or JSON string) that is a bare command
       r"(^|=|\": \")(systeminfo|sysinfo|whoami|ifconfig|ipconfig|netstat -[a-z]{1,4}|sleep [0-9]{1,3})($|&|\")|"
       r"(=|\": \") (id|whoami|uname( -a)?|ls( -la?)?|pwd|hostname|ifconfig|ping -[a-z])( |$|&|\")|&& ?sysinfo\b|"
       r"\\{1,2}n(id|whoami|uname|pwd|ifconfig)\\{1,2}n|\b(perl|python[23]?|ruby|php|node) -[er] \\?['\"]|"
       r"\bls -[a-z]{1,4} /|"
       r"\b(wget|curl) [^ ]{0,8}(https?|ftp)://|\bchmod [+0-7]|\bbash -[ci]",
       "shell / interpreter path or invocation"),
    # --- path traversal / LFI --------------------------------------------------------------------
    _p("traversal.dotdot", "path_traversal", _ALL, r"(^|[/\\=:; '\"])\.{2,3}[/\\;]|[/\\]\.{2,3}([/\\]|$| |;)|"
       r"(0x2e){2}|\.\.0x(2f|5c)|\.\.(2f|5c)\.\.|\bli4vli4v|\bli4uli4u",
       "../ sequence"),
    _p("traversal.os_file", "path_traversal", _ALL,
       r"(/etc/(passwd|shadow|group|hosts|issue|motd|fstab|crontab|sudoers|hostname|resolv\.conf|ssh|"
       r"security|httpd|apache2|nginx|mysql|php)|/proc/(self|\d+)/|/var/(log|www|lib|mail|run)/|/root/|"
       r"/home/[a-z0-9_]+/\.|/usr/local/|/dev/(tcp|udp)|boot\.ini|win\.ini|system\.ini|/windows/|"
       r"system32|c:\\|c:/|\\windows\\|\bwinnt\b|/inetpub|/bin/(ba|z|da|c|tc|k)?sh\b|/etc/\w|"
       r"(^|[=/ ])\.(ssh|docker|aws|kube|gnupg|git|svn|config)/|/sys/(class|kernel|block|devices|fs)|/tmp/|"
       r"/@(fs|id)/|\bid_(rsa|dsa|ecdsa|ed25519)\b|\bbackup\.(sql|zip|tar)|\.(sql|bak)\.(zip|gz|tar))",
       "operating-system file path"),
    _p("traversal.wrapper", "path_traversal", _ALL,
       r"\b(file|php|zip|phar|glob|expect|zlib|compress\.zlib|compress\.bzip2|data|ogg|rar|ssh2|input)://|"
       r"\bconvert\.(iconv|base64-(de|en)code|quoted-printable-(de|en)code)\b|\bstring\.(rot13|toupper|tolower)\b",
       "stream wrapper"),
    _p("traversal.system_path", "path_traversal", _PARAMS,
       # not /private/, /library/, /dev/…: routes a redirect parameter names (next=/private/inbox)
       r"(^|[=:;'\" ])/(etc|var|usr|opt|proc|boot|root)/[a-z0-9._-]{2,}",
       "parameter value is an absolute system path (local file inclusion)"),
    # --- code injection (PHP, JS, generic) --------------------------------------------------------
    _p("code.php_tag", "code_injection", _ALL, r"<\?(php\b|=|[ a-z$])",
       "PHP open tag"),
    _p("code.php_misc", "code_injection", _ALL,
       r"[\[{]/?php[\]}]|<\?($| )|\b(posix_[a-z]{3,20}|gz(de|in|un)[a-z]{3,12}|date_[a-z]{3,12}|"
       r"array_[a-z_]{3,20}|str_[a-z_]{3,20}|mb_[a-z_]{3,20}|ini_[a-z_]{3,10}|extension_dir)\b ?[(=]|"
       r"\$ ?\{ ?\$?[a-z_]{1,20}\}",
       "PHP tag, function family or variable variable"),
    _p("code.php_call", "code_injection", _ALL,
       r"\b(eval|assert|system|exec|shell_exec|passthru|popen|proc_open|pcntl_exec|base64_decode|"
       r"gzinflate|str_rot13|phpinfo|file_get_contents|file_put_contents|fopen|fwrite|readfile|"
       r"show_source|highlight_file|include_once|require_once|preg_replace|create_function|"
       r"call_user_func|call_user_func_array|array_map|unserialize|var_dump|print_r|mail|"
       r"move_uploaded_file|getenv|putenv|ini_set|set_time_limit|chr|ord|hex2bin|bin2hex) ?\(",
       "PHP function call"),
    _p("code.php_function", "code_injection", _ALL,
       f"({_PHP_FUNCTIONS}|exec|system|passthru|popen|assert_options|file|filegroup|unpack|strip_tags|printf|"
       r"intval|checkdate|chroot|symlink|serialize|touch|pi|range|crypt|substr|return ?\"system\")"
       r"( ?(#|//)[^ (]{0,20})? ?\(",
       "high-risk PHP function called"),
    _p("code.php_more", "code_injection", _ALL,
       r"\b(exec|system|passthru|shell_exec|popen|eval|assert)( [a-z]{1,20}){1,2} ?\(|"
       r"\b(ldap|sodium|tidy|openssl|mysqli|sqlite|simplexml|socket|stream|proc|posix|pcntl)_[a-z0-9_]{2,60} ?\(",
       "PHP call behind a comment, or from a risky extension"),
    _p("code.php_config", "code_injection", _ALL,
       r"\b(memory_limit|allow_url_include|allow_url_fopen|auto_prepend_file|auto_append_file|open_basedir|"
       r"disable_functions|safe_mode|extension_dir|display_errors) ?=|\$ ?\{ ?['\"a-z_@$]|"
       r"\$[a-z_{@$'\"\[][^ ()=&]{0,40} ?\(|[\[{][\\/]?php[\]}]|@ ?\{ ?\[|\bwhile ?\( ?[!(]",
       "PHP ini directive, variable function, Perl interpolation"),
    _p("code.php_var", "code_injection", _ALL,
       r"\$_(get|post|cookie|request|server|files|env|session)\b|\$globals\b|php://|\bphpinfo\b|"
       r"\b(o|a|s|c):\d+:[\"{]",
       "PHP superglobal, wrapper or serialized object"),
    _p("code.js", "code_injection", _ALL,
       r"\b(require|process\.mainmodule)\b ?[.(]|child_process|__proto__|constructor ?[.\]\[]{0,3} ?prototype|"
       r"\bfunction ?\( ?\) ?\{|\bnew function\b|\bprocess\.(env|exit|kill|binding)|\beval ?\(|"
       r"\bimport ?\( ?['\"]|\bsettimeout ?\( ?['\"]|\bspawn ?\(|\bexecsync\b|\bobject\.assign\b",
       "JavaScript / Node.js code"),
    _p("code.js_misc", "code_injection", _ALL,
       r"\bconsole ?(\.|\[)|\bmodule\.exports|_\$\$nd_func\$\$_|__js_function|xyqktkrfrlvoqyqkxw|"
       r"\bthis\.constructor|\bprocess ?\[|\$[0-9a-z]{1,3}:[a-z_]{1,20}:prototype|"
       r"\bglobal(this)? ?[.\[]|\breq\.(query|body|params)",
       "Node.js serialization / runtime access"),
    _p("code.java_class", "code_injection", _PARAMS,
       r"\bclass\.(module\.)?classloader\b|\.classloader\.(resources|urls|parent)\b",
       "Java class-loader property binding (Spring4Shell)"),
    # --- XSS -------------------------------------------------------------------------------------
    _p("xss.script_tag", "xss", _ALL, r"<(/ ?)?script|<[a-z]{1,20}[^>]{0,200}\bscript:",
       "script tag"),
    _p("xss.handler", "xss", _ALL,
       r"(<[a-z/!][^>]{0,200}|[\"'`; /])on[a-z]{3,40} ?=|\bon(error|load|mouseover|mouseout|focus|blur|"
       r"click|dblclick|mouseenter|mouseleave|mousemove|keydown|keyup|keypress|submit|change|input|"
       r"animationstart|animationend|transitionend|toggle|begin|pageshow|hashchange|message|resize|"
       r"scroll|wheel|drag|dragstart|drop|copy|paste|cut|select|beforeunload|unload|popstate|auxclick|"
       r"pointerover|pointerdown|focusin|play|readystatechange) ?=",
       "event-handler attribute"),
    _p("xss.tag", "xss", _ALL,
       r"<(iframe|frame|frameset|img|image|svg|object|embed|applet|body|style|link|meta|base|form|"
       r"input|button|video|audio|source|details|marquee|isindex|math|textarea|select|keygen|template|"
       r"xss|a|div|span|table|td|p|h1|isindex|bgsound|layer|ilayer|xml|html|title|vmlframe|animate|set|"
       r"foreignobject|dialog|slot|portal|plaintext|listing|xmp|noscript)[ />\x00]",
       "HTML tag"),
    _p("xss.uri", "xss", _ALL,
       r"(javascript|vbscript|livescript|mocha) ?:|data: ?text/|<%[^>]{0,80}%>|data: ?[a-z/+-]{1,40};base64|"
       r"-moz-binding|\bexpression ?\(|\bsrcdoc ?=|\bformaction ?=|\bxlink:href|behavior ?:",
       "script URI / CSS expression"),
    _p("xss.call", "xss", _ALL,
       r"\b(alert|prompt|confirm|eval|settimeout|setinterval|fromcharcode|atob|write|writeln) ?[(`]|"
       r"document ?\. ?(cookie|domain|write|location|body|forms)|window ?\. ?(location|name|open)|"
       r"\bbtoa ?\(|\+adw-|url ?\( ?['\"]?(javascript|data|vbscript)|"
       r"\.innerhtml|\.outerhtml|top ?\[|\bself ?\[|\bparent ?\[|\bthis ?\[|\bstring\.fromcharcode",
       "script call or DOM sink"),
    _p("xss.misc", "xss", _ALL,
       r"<[a-z]( [a-z]){3,}|\bdata: ?,|<(import|[a-z]{1,10} ?: ?script)|< ?[a-z]{1,10} ?: ?script|\bvalueof ?=|"
       r"\$\{ ?(alert|prompt|confirm|eval)\b|\bcall ?`|\.sort ?\. ?call|\{%[^%]{0,80}%\}",
       "spaced tags, template-literal calls, data URIs"),
    # --- SQL injection ---------------------------------------------------------------------------
    _p("sqli.union", "sqli", _ALL, r"\bunion[ (]*(all|distinct|select)\b", "UNION SELECT"),
    _p("sqli.time", "sqli", _ALL,
       r"\b(sleep|benchmark|pg_sleep|dbms_lock\.sleep|dbms_pipe\.receive_message|randomblob) ?\(|"
       r"\bwaitfor (delay|time)\b",
       "time-based blind (sleep / waitfor)"),
    _p("sqli.tautology", "sqli", _ALL,
       r"['\"`)] ?(or|and|xor|div|\|\||&&|having|where|rlike|regexp|like|sounds like)\b|"
       r"\b(or|and|xor|having|where) ?\(? ?['\"]?[\w.-]{0,20}['\"]? ?(=|<|>|!=|<>|<=>| like | is | in ?\(| "
       r"between | rlike | regexp ) ?\(? ?['\"]?[\w.-]{0,20}|['\"] ?[=<>!^|&*/%+-]{1,3} ?['\"(]|"
       r"\b(or|and) (not )?(true|false|null|\d+)\b ?(--|#|$|;|\))",
       "boolean / tautology"),
    _p("sqli.terminator", "sqli", _ALL, r"['\"`)] ?(;|--|#|/\*)|;--|--[ +]?$|/\*!|\*/ ?(union|select|or|and)",
       "quote then comment / statement terminator"),
    _p("sqli.stacked", "sqli", _ALL,
       r"; ?(select|insert|update|delete|drop|create|alter|exec|execute|declare|shutdown|truncate|grant|"
       r"revoke|rename|replace|load|handler|call|set|begin|waitfor|use|show|desc|merge|copy)\b",
       "stacked query"),
    _p("sqli.keyword", "sqli", _ALL,
       r"\bselect\b[^&]{0,100}\bfrom\b|\b(insert|replace) into\b|\bdelete from\b|\b(drop|create|alter|"
       r"truncate) (table|database|schema|user|view|procedure|function)\b|\bupdate [\w`.\"\[\]]{1,64} "
       r"set\b|\bselect ?(\*|@@|null|count ?\(|case|char|concat|if ?\(|top \d|\d+ ?(,|from|$))|"
       r"\border by \d|\bgroup by\b[^&]{0,40}\bhaving\b|\bcase when\b|\bexec(ute)? (master|xp_|sp_)|"
       r"\binto (out|dump)file\b|\bload data\b|\blike ['\"]?%|\bis (not )?null\b ?(--|#|;)",
       "SQL statement or clause"),
    _p("sqli.function", "sqli", _ALL,
       r"\b(information_schema|sysobjects|syscolumns|sysusers|mysql\.user|pg_catalog|pg_shadow|"
       r"sqlite_master|all_tables|user_tables|msysobjects|xp_cmdshell|sp_executesql|sp_oacreate|"
       r"utl_http|utl_inaddr|dbms_\w+|@@version|@@datadir|@@hostname|@@servername|sys\.\w+)\b|"
       r"\b(concat|concat_ws|group_concat|char|nchar|chr|ascii|ord|substring|substr|mid|left|right|"
       r"hex|unhex|load_file|extractvalue|updatexml|version|database|schema|user|current_user|"
       r"system_user|session_user|convert|cast|coalesce|ifnull|nullif|iif|elt|make_set|exp|floor|"
       r"rand|count|length|len|lower|upper|reverse|instr|locate|position|strcmp|md5|sha1|"
       r"json_extract|json_keys|xmltype|to_char|to_number|row_count|found_rows|last_insert_id|"
       r"connection_id|uuid|sqlite_version|pg_read_file|lo_import|db_name|object_id|col_name|"
       r"has_dbaccess|is_srvrolemember|openrowset|opendatasource|waitfor) ?\( ?(@|'|\"|\d|select|"
       r"\)|null|0x|char|concat|user|version|database|[a-z_]+ ?\()",
       "SQL function or system table"),
    _p("sqli.hex_or_numeric", "sqli", _ALL,
       r"\b0x[0-9a-f]{6,}\b|['\"] ?\+ ?['\"]|\|\| ?['\"(]|\b\d+ ?(and|or|xor|div|mod) ?\d+ ?(=|<|>)|"
       r"['\"] ?(and|or) ?['\"]?\d|(=|\b)-?\d+['\"] ?(and|or|union|order|group|having|;|--|#)|"
       r"\b(and|or|having) \d+ ?(=|<|>|like)|@@[a-z_]+|\bchar ?\( ?\d+ ?[,)]|=\d+ ?(=|<=>|!=|<>) ?\d|"
       r"\blike null\b|\d is not \d|::(int|text|jsonb?|varchar|bigint|regclass)\b|\bstarts_with ?\(|"
       r"\b(jsonb?_[a-z_]{3,20}|unistr|pg_[a-z_]{3,20}|sqlite_[a-z_]{3,20}) ?\(",
       "hex literal, string concatenation or numeric comparison"),
    _p("sqli.misc", "sqli", _ALL,
       r"union ?(all ?)?select|\bif ?\( ?\d+ ?=|\bexecute immediate\b|\bhaving count ?\(|\blike ['\"]( |$|%)|"
       r"\bpg_sleep\b|\[\$(ne|eq|gt|gte|lt|lte|in|nin|regex|where|exists|not|or|and|elemmatch|expr|size|type|"
       r"mod|all)\]|\bdiv ?\( ?-?\d|\blo_(get|import|export) ?\(|::double precision|\bexcept ?(select|values)\b|"
       r"\bxor ?\d|\b(msdasql|sqloledb)\b|\b(or|and) \{if\b|\?[|&] ?array\[|' ?\? ?'|\b4294967296\b|"
       r"2\.2250738585072011e-308|\|\||\bglob \d|[,(]\d+=\d|\b(or|and) \+[a-z]",
       "SQL dialect features, NoSQL operators and magic values"),
    _p("sqli.nosql_json", "sqli", frozenset({"body"}),
       r"\{ ?\\?\"\$(ne|gt|gte|nin|regex|where|exists|expr|function)\\?\" ?: ?(null\b|\\?\"\\?\"|\\?\"\.[*+]|\[ ?\]|"
       r"true\b|\\?\"[^\"]{0,80}(sleep|this\.|function|return))",
       "NoSQL operator object matching anything (auth bypass)"),
    _p("sqli.nosql_js", "sqli", frozenset({"body"}), r"\\?\"\$(where|function|accumulator)\\?\" ?:",
       "MongoDB server-side JavaScript operator (never sent by a legitimate client)"),
    _p("sqli.nosql_param", "sqli", frozenset({"query", "url", "header"}),
       r"\$(where|ne|gt|gte|lt|lte|nin|regex|exists|or|and|nor|not|expr|comment|elemmatch)\b\\?['\"]? ?:",
       "NoSQL operator in a query parameter"),
    _p("sqli.nosql_operator", "sqli", _PARAMS,
       # an operator not quoted as a JSON key ({ $ne: 1 }, ', $where: '…'): Mongo-style JSON filters
       # of CMS APIs ({"price": {"$gt": 10}}) are ordinary; sqli.nosql_json judges those by their value
       r"\$(where|ne|gt|gte|lt|lte|nin|regex|exists|or|and|nor|not|expr|comment|elemmatch)\b ?:|"
       r"\bthis\.[a-z_]{1,40}\.match ?\(|; ?return (true|1|'[a-z]' ?== ?'[a-z]')\b|\|\| ?1 ?== ?1|"
       r"\bdb\.[a-z_]{1,40}\.(insert|find|update|remove|drop|mapreduce)\b",
       "NoSQL (MongoDB) operator or server-side JavaScript in a parameter"),
    _p("sqli.account", "sqli", _PARAMS,
       r"(^|=|\": \")select (session_user|current_user|system_user|user|version|database)\b ?(\(\))? ?(;|$|&|\")|"
       r"\bcreate user [a-z0-9_@'\"]{1,64} identified by\b",
       "SQL account or identity query (CREATE USER … IDENTIFIED BY, SELECT current_user)"),
    _p("code.xxe", "code_injection", _PARAMS, r"<!entity\b|<!doctype [a-z_:.-]{1,40} ?\[",
       "XML external entity / DTD declaration (XXE)"),
    _p("code.ldap_filter", "code_injection", _PARAMS,
       r"\*\) ?\(|\*\(\)\||\)\( ?[a-z]{1,20} ?=|\) ?\( ?[|&!]|\( ?[|&] ?\(|\(objectclass=\*?\)|\*\)\)|"
       r"\( ?(uid|cn|mail|objectclass|userpassword|samaccountname) ?= ?\*",
       "LDAP filter injection"),
    # weak: last in the table, and any hit in another field wins over it
    _p("probe.archive", "archive_probe", _PATHS,
       r"\.(tar|tgz|tar\.gz|tar\.bz2|zip|gz|bz2|7z|rar|war|jar)(~|\.\d+)?($|\?| )",
       "archive file name (counted only when the server refused it)"),
    _p("probe.endpoint", "endpoint_probe", _PATHS,
       r"^(https?://[^/]{1,200})?/(heapdump|threaddump|jolokia|env|configprops|beans|mappings|httptrace|auditevents|"
       r"liquibase|flyway|logfile|shutdown|autoconfig|conditions|scheduledtasks|integrationgraph|gateway/routes)"
       r"(/|$|\?| )",
       "Spring Boot actuator endpoint at the root (counted only when the server refused it)"),
)

# --- free-text bodies ----------------------------------------------------------------------------
# A body that is prose (a support ticket, a comment, markdown, a pasted doc paragraph: four plain
# words in a row, inline code after a word, a code fence, a markdown link, a REPL prompt; after
# decoding) is matched with a stricter table: the patterns that fire on
# ordinary writing — backticks (markdown and rST inline code), "(PDF) or the link", "file (v2)",
# "; more", "../guides/setup.md", "select an item from the list", a proxy URL on 10.x — are left
# out or replaced by a variant that needs the attack's own shape. Every other pattern (UNION
# SELECT, sleep(), <script, on*=, /etc/passwd, ${jndi:, $IFS, …) applies as everywhere: padding an
# attack with prose only turns the weakest signals off. The collector renders the same choice
# (`IsMatch(body, PROSE)`), so both label alike.
PROSE = (r"(^|[^a-z0-9_])[a-z]{2,20}(,? [a-z]{1,20}){3}([^a-z0-9_]|$)"  # four plain words in a row
         r"|[a-z]{2,20}[ (]``?[^`]{1,80}``?([ ,.;:!?)_]|$)"  # a word, then `inline code` (markdown, rST)
         # a code fence, a [link](url), an rST :role:`x`, a >>> REPL prompt
         r"|```|\]\((https?:|\.{0,2}/|#)[^ )]{0,200}\)|:[a-z]{2,12}:`|(^|[^a-z0-9])>>> ")
PROSE_KIND = "prose"
_SHELL_COMMANDS = (r"cat|id|whoami|uname|ifconfig|ipconfig|netstat|wget|curl|nc|ncat|netcat|bash|sh|zsh|ping|"
                   r"nslookup|sleep|python[23]?|perl|ruby|php|powershell|cmd|systeminfo|certutil|rm|chmod")
_PROSE_VARIANTS: dict[str, Pattern | None] = {
    # None: not used on prose; a Pattern: used instead of the original on prose
    "cmdi.chain": _p("cmdi.chain_prose", "cmdi", frozenset({PROSE_KIND}),
                     r"(;|\|\||&&|\|) ?(/[a-z/]*)?(" + _SHELL_COMMANDS + r")( ?[-/$<>|;&'\"(]| ?$)",
                     "shell command after a separator"),
    "cmdi.substitution": _p("cmdi.substitution_prose", "cmdi", frozenset({PROSE_KIND}),
                            r"\$\{ifs|\$ifs\b|\$\{path:|\$\{home|\$\( ?(/[a-z/]*)?(" + _SHELL_COMMANDS + r")( |\))|"
                            r"`(/[a-z/]*)?(" + _SHELL_COMMANDS + r") [^`]{0,40}([|;>]|\$\(|/etc/|/bin/|/tmp/|/dev/)"
                            r"[^`]{0,40}`",
                            "command substitution / $IFS"),
    "cmdi.evasion": None,
    "cmdi.more": None,
    "traversal.dotdot": _p("traversal.dotdot_prose", "path_traversal", frozenset({PROSE_KIND}),
                           r"(\.\.[/\\]){2}|[/\\]\.\.[/\\]\.\.", "../ sequence"),
    "code.php_call": _p("code.php_call_prose", "code_injection", frozenset({PROSE_KIND}),
                        r"\b(eval|assert|shell_exec|passthru|popen|proc_open|pcntl_exec|base64_decode|gzinflate|"
                        r"str_rot13|phpinfo|file_get_contents|file_put_contents|create_function|call_user_func|"
                        r"call_user_func_array|unserialize|move_uploaded_file)\(", "PHP function call"),
    "code.php_function": _p("code.php_function_prose", "code_injection", frozenset({PROSE_KIND}),
                            f"\\b({_PHP_FUNCTIONS})\\(", "high-risk PHP function called"),
    "rfi.userinfo": None,
    "ssrf.internal": _p("ssrf.internal_prose", "ssrf", frozenset({PROSE_KIND}),
                        r"169\.254\.169\.254|metadata\.google\.internal|metadata\.azure|100\.100\.100\.200|"
                        r"://0x[0-9a-f]{2,8}\b|://\d{8,10}\b|://0[0-7]{3}\.|://\[::(ffff:)?(1|127|7f)",
                        "URL to a cloud metadata service or an obfuscated loopback address"),
    "xss.tag": _p("xss.tag_prose", "xss", frozenset({PROSE_KIND}),
                  r"<(iframe|frame|frameset|object|embed|applet|base|meta|svg|math|isindex|xss|vmlframe|"
                  r"foreignobject|portal)[ />\x00]", "HTML tag"),
    "sqli.tautology": _p("sqli.tautology_prose", "sqli", frozenset({PROSE_KIND}),
                         r"['\"`] ?(or|and|xor|\|\||&&) ?\(? ?['\"]?[\w.-]{0,20}['\"]? ?"
                         r"(=|<|>|!=|<>|<=>| like | is | in ?\(|"
                         r" between | rlike | regexp )|\b(or|and) (not )?(true|false|null|\d+) ?(=|<|>|--|#|;)|"
                         r"[=:] ?\"? ?['\"] ?(or|and|xor|\|\||&&) |"
                         r"['\"] ?(or|and) [a-z_]{1,30} (not )?(i?like|similar to|"
                         r"rlike|regexp|between)\b",
                         "boolean / tautology"),
    "sqli.terminator": _p("sqli.terminator_prose", "sqli", frozenset({PROSE_KIND}),
                          r"['\"] ?(;|--|#|/\*) ?(select|insert|update|delete|drop|union|exec|shutdown|waitfor|$)"
                          r"|;--|/\*!",
                          "quote then comment / statement terminator"),
    "sqli.keyword": _p("sqli.keyword_prose", "sqli", frozenset({PROSE_KIND}),
                       r"\binto (out|dump)file\b|\bexec(ute)? (master|xp_|sp_)|\bselect ?(@@|null ?,|count ?\( ?\*"
                       r" ?\) ?from|concat ?\(|char ?\()|\b(drop|truncate) table [a-z_`\"]{1,64} ?(;|--|#)|"
                       r"\bselect [a-z_*,.]{1,64} from [a-z_.]{1,64} where\b|\( ?select [a-z_*.]{1,64} ?(,|from)|"
                       r"\b(alter|create)[ +]table\b|\bas[ +]`[a-z_]{1,64}`[ +]from\b|"
                       r"\bfrom[ +]`[a-z_]{1,64}`([ +](where|order|"
                       r"limit)\b|\.`)",
                       "SQL statement or clause"),
    "sqli.hex_or_numeric": None,
    "sqli.misc": _p("sqli.misc_prose", "sqli", frozenset({PROSE_KIND}),
                    r"union ?(all ?)?select|\bif ?\( ?\d+ ?=|\bexecute immediate\b|\[\$(ne|eq|gt|gte|lt|lte|in|"
                    r"nin|regex|where|exists|not|or|and|elemmatch|expr)\]|\b(msdasql|sqloledb)\b|"
                    r"2\.2250738585072011e-308", "SQL dialect features, NoSQL operators and magic values"),
    "code.php_config": _p("code.php_config_prose", "code_injection", frozenset({PROSE_KIND}),
                          r"\b(allow_url_include|allow_url_fopen|auto_prepend_file|auto_append_file|open_basedir|"
                          r"disable_functions|safe_mode) ?=|\$\{ ?@|\$ ?\{ ?\$",
                          "PHP ini directive, variable function, Perl interpolation"),
    "code.js": _p("code.js_prose", "code_injection", frozenset({PROSE_KIND}),
                  r"\bprocess\.mainmodule\b|child_process|__proto__|constructor ?[.\]\[]{0,3} ?prototype|"
                  r"\bprocess\.(binding|kill)|\brequire ?\( ?['\"](child_process|fs|net|os)['\"] ?\)|\bexecsync\b",
                  "JavaScript / Node.js code"),
    "code.js_misc": None,
    "traversal.system_path": None,  # "permission denied on /var/www" in a ticket
    "sqli.nosql_operator": None,  # "db.users.find() returns nothing" in a ticket
    "code.ldap_filter": None,  # "**Save**) (sometimes" in markdown
    "code.php_misc": _p("code.php_misc_prose", "code_injection", frozenset({PROSE_KIND}),
                        r"[\[{]/?php[\]}]|<\?($| )|\b(posix_[a-z]{3,20}|gz(de|in|un)[a-z]{3,12}|ini_[a-z_]{3,10}|"
                        r"extension_dir)\b ?[(=]|\$ ?\{ ?\$[a-z_]{1,20}\}",
                        "PHP tag, function family or variable variable"),
    "xss.misc": None,
    "template.expression": _p("template.expression_prose", "template", frozenset({PROSE_KIND}),
                              r"(\{\{|\$\{|#\{|<%=?|\{%|\$\{\{) ?[^}]{0,80}(\d ?[*+] ?\d|__[a-z]+__|\.(class|mro|"
                              r"subclasses|globals|builtins|getruntime|forname|exec)\b|t\(java|new java|runtime|"
                              r"processbuilder|freemarker|velocity)", "template / expression-language injection"),
}


def _with_prose(table: tuple[Pattern, ...]) -> tuple[Pattern, ...]:
    """The table with the prose kind: a body pattern applies to prose bodies too unless it has a
    prose variant (placed right after it, so the table order holds) or is left out on prose."""
    out: list[Pattern] = []
    for pattern in table:
        if "body" not in pattern.kinds:
            out.append(pattern)
            continue
        if pattern.id not in _PROSE_VARIANTS:
            out.append(Pattern(pattern.id, pattern.family, pattern.kinds | {PROSE_KIND}, pattern.regex, pattern.name))
            continue
        out.append(pattern)
        variant = _PROSE_VARIANTS[pattern.id]
        if variant is not None:
            out.append(variant)
    return tuple(out)


PATTERNS: tuple[Pattern, ...] = _with_prose(_TABLE)

# --- decoding ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One decoding step: replace every match of ``regex`` (RE2-compatible) by ``replacement``
    (literal text; ``$1`` stands for the first group, as in Go). ``triggers``: substrings one of
    which must occur for the step to match anything (lets Python skip it); empty = always run."""

    regex: str
    replacement: str
    triggers: tuple[str, ...]
    group: str = ""  # "percent" for the %NN table (Python runs it as one fast loop)


def _percent_table() -> list[Step]:
    steps = [
        # overlong UTF-8, %u and percent-encoded full-width forms of the characters that matter
        Step("%c0%ae|%e0%80%ae|%c0%2e|%ef%bc%8e|%uff0e", ".", _OVERLONG),
        Step("%c0%af|%e0%80%af|%c0%2f|%ef%bc%8f|%uff0f", "/", _OVERLONG),
        Step("%c1%9c|%c1%1c|%c0%5c|%ef%bc%bc|%uff3c", "\\", _OVERLONG),
        Step("%ef%bc%9c|%uff1c|%c0%bc", "<", _OVERLONG),
        Step("%ef%bc%9e|%uff1e|%c0%be", ">", _OVERLONG),
        Step("%ef%bc%87|%uff07|%c0%a7", "'", _OVERLONG),
        Step("%ef%bc%82|%uff02|%c0%a2", '"', _OVERLONG),
        Step("%0[9abcd]", " ", ("%0",)),
        Step("%00", "", ("%",), "percent"),
    ]
    for code in range(0x20, 0x7F):
        if code != 0x25:
            steps.append(Step(f"%{code:02x}", chr(code).lower(), ("%",), "percent"))
    return steps


_OVERLONG = ("%c0", "%c1", "%e0", "%ef", "%uff")
_FULLWIDTH = ".\\/<>'\"();|${}=&"


def _one_pass() -> list[Step]:
    return [
        Step(r"\\x([0-9a-f]{2})", "%$1", ("\\x",)),
        Step(r"\\u00([0-9a-f]{2})", "%$1", ("\\u00",)),
        Step(r"&#x0*([0-9a-f]{2});?", "%$1", ("&#x",)),
        Step(r"%u00([0-9a-f]{2})", "%$1", ("%u00",)),
        Step("%(25)+", "%", ("%25",)),
        # `host=127.0.0.1%0aid`: a newline after a host- or number-like value separates commands
        Step(r"(=[a-z0-9_-]{0,60}[0-9.][a-z0-9._:-]{0,60})%0[ad]", "$1;", ("%0",)),
        *_percent_table(),
        Step("&#0*60;?|&lt;?", "<", ('&#', '&lt')),
        Step("&#0*62;?|&gt;?", ">", ('&#', '&gt')),
        Step("&#0*39;?|&apos;", "'", ('&#', '&apos')),
        Step("&#0*34;?|&quot;?", '"', ('&#', '&quot')),
        Step("&#0*40;?|&lpar;", "(", ('&#', '&lpar')),
        Step("&#0*41;?|&rpar;", ")", ('&#', '&rpar')),
        Step("&#0*58;?|&colon;", ":", ('&#', '&colon')),
        Step("&#0*47;?|&sol;", "/", ('&#', '&sol')),
        Step("&#0*92;?|&bsol;", "\\", ('&#', '&bsol')),
        Step("&#0*59;?|&semi;", ";", ('&#', '&semi')),
        Step("&#0*61;?|&equals;", "=", ('&#', '&equals')),
        Step("&#0*9;|&#0*10;|&#0*13;|&#0*32;|&tab;|&newline;|&nbsp;", " ", ('&#', '&tab', '&newline', '&nbsp')),
        Step("&amp;?", "&", ("&amp",)),
        *(Step(re.escape(chr(ord(c) + 0xFEE0)), c, (chr(ord(c) + 0xFEE0),)) for c in _FULLWIDTH),
        Step("\u3002|\uff61", ".", ("\u3002", "\uff61")),  # ideographic full stops in host names
    ]


def decode_steps() -> list[Step]:
    """Every decoding step in order, applied after lower-casing."""
    return [
        Step(r"\+", " ", ("+",)),
        *_one_pass(),
        *_one_pass(),
        Step(r"/\*!?[0-9]*|\*/", " ", ("/*", "*/")),
        Step("[\t\n\v\f\r ]+", " ", ("\t", "\n", "\v", "\f", "\r", "  ")),
    ]


_PERCENT = re.compile(r"%[0-9a-f]{2}")
_HEX_DIGITS = frozenset("0123456789abcdef")
Compiled = tuple[Step, "re.Pattern[str]", Callable[["re.Match[str]"], str]]


def _python_replacement(replacement: str) -> Callable[[re.Match[str]], str]:
    if "$1" in replacement:
        before, after = replacement.split("$1", 1)
        return lambda m: before + m.group(1) + after
    return lambda m: replacement


@dataclass
class _Run:
    """Consecutive steps: either regex steps, or one run of the %NN table (``percent``)."""

    percent: list[tuple[str, str]]
    steps: list[Compiled]
    gate: re.Pattern[str] | None = None  # finds the triggers of ``steps`` that occur
    by_trigger: dict[str, list[int]] = field(default_factory=dict)  # trigger -> indices in steps
    order: dict[str, int] = field(default_factory=dict)  # %NN code -> index in percent


def _compile_steps() -> list[_Run]:
    """Runs of steps: regex steps compiled with their replacement; each run of the %NN table as
    (code, char) pairs that :func:`_percent_run` applies with exactly the same result."""
    runs: list[_Run] = []
    for step in decode_steps():
        if step.group == "percent":
            if not runs or not runs[-1].percent:
                runs.append(_Run([], []))
            runs[-1].percent.append((step.regex, step.replacement))
        else:
            if not runs or runs[-1].percent:
                runs.append(_Run([], []))
            runs[-1].steps.append((step, re.compile(step.regex, re.ASCII), _python_replacement(step.replacement)))
    for run in runs:
        run.order = {code: i for i, (code, _) in enumerate(run.percent)}
        for i, (step, _, _) in enumerate(run.steps):
            assert step.triggers, step  # every regex step names its triggers
            for trigger in step.triggers:
                run.by_trigger.setdefault(trigger, []).append(i)
        if run.steps:
            run.gate = re.compile("|".join(re.escape(t) for t in sorted(run.by_trigger, key=len, reverse=True)))
    return runs


def _percent_run(text: str, table: list[tuple[str, str]], order: dict[str, int]) -> str:
    """Sequential literal replacements in table order, visiting only codes that occur. A
    replacement can create a new code only by producing a hex digit or deleting (``%00``): then
    the codes present are recomputed, so the result equals the plain sequential loop."""
    pending = sorted(order[c] for c in set(_PERCENT.findall(text)) if c in order)
    k = 0
    while k < len(pending):
        i = pending[k]
        code, char = table[i]
        text = text.replace(code, char)
        if char == "" or char in _HEX_DIGITS:
            pending = sorted(order[c] for c in set(_PERCENT.findall(text)) if c in order and order[c] > i)
            k = 0
        else:
            k += 1
    return text


def _regex_run(text: str, run: _Run) -> str:
    """The run's regex steps in order, skipping those none of whose triggers occur (recomputed
    whenever a step changes the text), so the result equals running every step."""
    assert run.gate is not None
    present = set(run.gate.findall(text))
    pending = sorted({i for t in present for i in run.by_trigger[t]})
    k = 0
    while k < len(pending):
        i = pending[k]
        _, regex, repl = run.steps[i]
        changed = regex.sub(repl, text)
        if changed != text:
            text = changed
            present = set(run.gate.findall(text))
            pending = sorted({j for t in present for j in run.by_trigger[t] if j > i})
            k = 0
        else:
            k += 1
    return text


_RUNS = _compile_steps()
# any trigger of any step: a value without one is already in normal form
_NEEDS_DECODING = re.compile("|".join(re.escape(t) for t in sorted(
    {t for step in decode_steps() for t in step.triggers}, key=len, reverse=True)))


def normalize(value: str) -> str:
    """The text patterns are matched against (lower-cased, decoded as a WAF would)."""
    text = value.lower()
    if _NEEDS_DECODING.search(text) is None:
        return text
    for run in _RUNS:
        if run.percent:
            if "%" in text:
                text = _percent_run(text, run.percent, run.order)
        else:
            text = _regex_run(text, run)
    return text


def normalize_reference(value: str) -> str:
    """The same decoding, step by step with no shortcut (what the collector runs; for tests)."""
    text = value.lower()
    for step in decode_steps():
        text = re.compile(step.regex, re.ASCII).sub(_python_replacement(step.replacement), text)
    return text


# --- matching ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Hit:
    """What payload inspection found: the family, the pattern and the field name it was found in."""

    family: str
    pattern: str
    field: str
    name: str


class _KindMatcher:
    """The patterns of one field kind. With google-re2 (the collector's regex engine) they form
    one ``re2.Set``: one linear pass over the text says which patterns match, and the first in
    table order wins, as in the collector. Without it, Python ``re`` tries them in order."""

    def __init__(self, patterns: list[Pattern]) -> None:
        self.patterns = patterns
        self.compiled = [re.compile(p.regex, re.ASCII) for p in patterns]
        self.set: Any = None
        if _re2 is not None:
            options = _re2.Options()
            options.never_capture = True
            regex_set = _re2.Set.SearchSet(options)
            for pattern in patterns:
                regex_set.Add(pattern.regex)
            regex_set.Compile()
            self.set = regex_set

    def first(self, text: str) -> Pattern | None:
        if self.set is not None:
            found = self.set.Match(text)
            return self.patterns[min(found)] if found else None
        for pattern, regex in zip(self.patterns, self.compiled, strict=True):
            if regex.search(text) is not None:
                return pattern
        return None


_MATCHERS: dict[str, _KindMatcher] = {
    kind: _KindMatcher([p for p in PATTERNS if kind in p.kinds]) for _, kind in INSPECTED_FIELDS
}


class _BodyMatcher(_KindMatcher):
    """The body and prose tables in one set, with :data:`PROSE` as its last member: one pass says
    both whether the body is prose and which patterns match; the first pattern of the table that
    applies (prose or not) wins."""

    def __init__(self) -> None:
        super().__init__([p for p in PATTERNS if "body" in p.kinds or PROSE_KIND in p.kinds])
        self.prose_index = len(self.patterns)
        self.prose = re.compile(PROSE, re.ASCII)
        if self.set is not None:
            options = _re2.Options()
            options.never_capture = True
            regex_set = _re2.Set.SearchSet(options)
            for pattern in self.patterns:
                regex_set.Add(pattern.regex)
            regex_set.Add(PROSE)
            regex_set.Compile()
            self.set = regex_set

    def first(self, text: str) -> Pattern | None:
        if self.set is not None:
            found: list[int] = self.set.Match(text)
            if not found:
                return None
            mode = PROSE_KIND if self.prose_index in found else "body"
            for i in sorted(found):
                if i != self.prose_index and mode in self.patterns[i].kinds:
                    return self.patterns[i]
            return None
        mode = PROSE_KIND if self.prose.search(text) is not None else "body"
        for pattern, regex in zip(self.patterns, self.compiled, strict=True):
            if mode in pattern.kinds and regex.search(text) is not None:
                return pattern
        return None


_MATCHERS["body"] = _BodyMatcher()  # a free-text body is matched with the prose table (see PROSE)
# Captured request headers (semconv ``http.request.header.<lower-case name>``, string arrays):
# their values are inspected like the referrer, without the SSRF/RFI URL families (Origin, Referer
# and Host legitimately name the service's own and local hosts). In-process only: the collector's
# OTTL cannot walk attribute keys by prefix (classify.yaml and the README say so).
HEADER_PREFIX = "http.request.header."
HEADER_KIND = "request_header"
_MATCHERS[HEADER_KIND] = _KindMatcher([p for p in PATTERNS if "header" in p.kinds and p.family not in ("ssrf", "rfi")])
SCANNER_HEADERS = frozenset({
    # the OWASP CRS's scanners-headers.data (rule 913110): headers scanners announce themselves with
    "acunetix-product", "acunetix-scanning-agreement", "acunetix-user-agreement", "x-ratproxy-loop", "x-scanner",
    # HP/Micro Focus WebInspect
    "x-wipp", "x-request-memo", "x-requestmanager-memo",
})
_IS_HEADER = methodcaller("startswith", HEADER_PREFIX)


def _has_header(attrs: Mapping[str, Any]) -> bool:
    """Whether any key is a captured request header (one C-level join: ~3x cheaper than a loop)."""
    try:
        return HEADER_PREFIX in "\n".join(attrs)
    except TypeError:  # a non-string key
        return any(map(_IS_HEADER, (k for k in attrs if isinstance(k, str))))
_UNINSPECTED_HEADERS = frozenset({"authorization", "proxy-authorization"})  # credentials, not payloads
_HEADER_VALUES_MAX = 8  # values read per header (a repeated header)
_SIMPLE_PATH = re.compile(r"[A-Za-z0-9/_.-]*")
_NUMERIC_SEGMENT = re.compile(r"/[0-9]+(?=/|$)")
_MEMO_MAX = 4096
_MEMO_LEN = 256


def _over_bound(value: str) -> bool:
    """More than BOUND_BYTES in UTF-8 (as the collector's Len() counts), without encoding a huge value."""
    if len(value) > BOUND_BYTES:
        return True  # every character is at least one byte
    if len(value) * 4 <= BOUND_BYTES:
        return False  # at most four bytes each
    return len(value.encode("utf-8", "surrogatepass")) > BOUND_BYTES


class PayloadInspector:
    """Finds the first attack pattern in a record's request fields (``None`` when clean).

    Short field values are memoised (most requests repeat a few paths and user agents), so the
    clean path of a busy service is a dictionary look-up per field.
    """

    def __init__(self) -> None:
        self._memo: dict[tuple[str, str], Pattern | None] = {}

    def inspect_value(self, kind: str, value: str) -> Pattern | None:
        if kind == "path" and _SIMPLE_PATH.fullmatch(value) is not None:
            # `/api/orders/17` and `/api/orders/18` share one memo entry: no pattern tells one
            # all-digit segment of a plain path from another (a test checks this on the corpora)
            key = (kind, _NUMERIC_SEGMENT.sub("/0", value))
        else:
            key = (kind, value)
        memo = self._memo
        if key in memo:
            return memo[key]
        found = _MATCHERS[kind].first(normalize(value))
        if len(value) <= _MEMO_LEN:
            if len(memo) >= _MEMO_MAX:
                memo.clear()
            memo[key] = found
        return found

    def inspect(self, attr: Callable[[str], Any]) -> Hit | None:
        """Inspect the fields ``attr(name)`` returns (non-strings are skipped)."""
        return self.inspect_maps({name: attr(name) for name, _ in INSPECTED_FIELDS}, None)

    def inspect_maps(self, attrs: Mapping[str, Any], fallback: Mapping[str, Any] | None) -> Hit | None:
        """Inspect ``attrs`` (a field missing there is read from ``fallback``, e.g. what the
        access-line parser found). The hot path: one memo look-up per present field."""
        memo = self._memo
        weak: Hit | None = None
        request = False  # captured headers are looked for only on records of a request
        for name, kind in INSPECTED_FIELDS:
            value = attrs.get(name)
            if value is None and fallback is not None:
                value = fallback.get(name)
            if value.__class__ is not str or not value:
                continue
            request = True
            if kind == "url" and _known_path(attrs, fallback):
                continue  # url.full was split into url.path and url.query (fields.py): inspected there
            # long values are never memoised (nor hashed: a 10 MB body costs no more than its bound)
            cached = memo.get((kind, value), _MISSING) if len(value) <= _MEMO_LEN else _MISSING
            if cached is _MISSING:
                if _over_bound(value):
                    return Hit("oversize", "oversize.field", name, FAMILIES["oversize"].description)
                found = self.inspect_value(kind, value)
            else:
                found = cast("Pattern | None", cached)
            if found is not None:
                if found.family not in WEAK_FAMILIES:
                    return Hit(found.family, found.id, name, found.name)
                if weak is None:
                    weak = Hit(found.family, found.id, name, found.name)
        if request and _has_header(attrs):
            for key in attrs:
                if key.startswith(HEADER_PREFIX):
                    hit = self._inspect_header(key, attrs[key])
                    if hit is not None:
                        return hit
        return weak

    def _inspect_header(self, key: str, value: Any) -> Hit | None:
        name = key[len(HEADER_PREFIX):].lower()
        if name in SCANNER_HEADERS:
            return Hit("attack_tool", "tool.scanner_header", key, "scanner announces itself in a request header")
        if name in _UNINSPECTED_HEADERS:
            return None
        kind = "agent" if name == "user-agent" else HEADER_KIND
        values = (value,) if isinstance(value, str) else value if isinstance(value, (list, tuple)) else ()
        for item in values[:_HEADER_VALUES_MAX]:
            if item.__class__ is not str or not item:
                continue
            if _over_bound(item):
                return Hit("oversize", "oversize.field", key, FAMILIES["oversize"].description)
            found = self.inspect_value(kind, item)
            if found is not None:
                return Hit(found.family, found.id, key, found.name)
        return None


_MISSING = object()


def _known_path(attrs: Mapping[str, Any], fallback: Mapping[str, Any] | None) -> bool:
    path = attrs.get("url.path")
    if path is None and fallback is not None:
        path = fallback.get("url.path")
    return path.__class__ is str and bool(path)


RULESET = "otel-ext payload inspection"


def attack_attributes(hit: Hit) -> dict[str, Any]:
    """The ECS ``rule.*`` fields and the matched field's name for one hit (never the payload)."""
    return {
        "rule.id": hit.pattern,
        "rule.name": hit.name,
        "rule.category": FAMILIES[hit.family].category,
        "rule.ruleset": RULESET,
        "labels.attack_field": hit.field,
    }


def inspect_mapping(values: Mapping[str, Any]) -> Hit | None:
    """Convenience for tests and tools: inspect a plain mapping of attributes."""
    return PayloadInspector().inspect(values.get)
