"""Package pools per ecosystem, their release histories, and OSV range events over them.

Every package has one deterministic release history, and advisory ranges, ``versions``
lists, SBOM components and VEX products all take their versions from it: that is what
makes a synthetic SBOM actually hit synthetic advisories, and a VEX statement name a
version that exists. Version strings are valid for their ecosystem (PEP 440, SemVer
2.0 without a ``v`` for OSV Go and crates, Maven qualifiers, Debian and Alpine
revisions); the tests parse them.
"""

from __future__ import annotations

import functools
import random
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

from stella.ledger.synthetic._text import Draw, enc, pick, quant, sha1_like

__all__ = ["ECOSYSTEMS", "WORDS", "Ecosystem", "Package", "events", "git_events", "package", "release"]

WORDS = tuple(
    """auth cache config crypto data db http json log mail net parse query queue render rpc
    schema session sql stream sync template token upload url util web xml yaml zip image pdf
    markdown socket proxy router form admin cli client server api graph event archive codec
    compress cookie cors csv dns feed font glob hash html jwt ldap lexer media mime oauth orm
    pool redis regex rest sandbox sanitize scheduler search secure serial shell smtp sso
    storage svg task tls tree unicode validate view websocket worker""".split()  # noqa: SIM905
)
_ORGS = tuple(
    """apache google hashicorp kubernetes mozilla microsoft openstack pallets encode aio-libs
    fastify expressjs spring-projects eclipse netty FasterXML golang grpc containerd moby
    prometheus rust-lang tokio-rs hyperium serde-rs rails sinatra dotnet symfony laravel
    drupal dart-lang elixir-lang phoenixframework vapor apple jenkinsci keycloak redis
    openssl curl gnome kde libarchive ImageMagick tensorflow pytorch huggingface""".split()  # noqa: SIM905
)

# Well-known names head each pool, so (with the skewed draw) they collect most advisories.
_POPULAR: dict[str, str] = {
    "PyPI": """django flask requests urllib3 jinja2 pillow numpy pyyaml cryptography paramiko aiohttp
        tornado twisted sqlalchemy celery lxml werkzeug ansible salt pyjwt certifi setuptools pip
        tensorflow torch gradio mlflow langchain transformers scrapy bleach mistune notebook
        jupyter-server plone keystone nova httpx fastapi starlette uvicorn gunicorn pydantic pymongo
        pyopenssl idna protobuf grpcio ray rsa ecdsa waitress""",
    "npm": """lodash express axios minimist moment jquery handlebars marked node-fetch ws semver tar
        json5 qs follow-redirects got underscore async debug ejs mongoose sequelize jsonwebtoken
        socket.io webpack next vite @babel/traverse @angular/core vue electron undici xml2js
        shelljs glob-parent ansi-regex path-to-regexp body-parser cookie send""",
    "Maven": """org.apache.logging.log4j:log4j-core com.fasterxml.jackson.core:jackson-databind
        org.springframework:spring-web org.springframework:spring-core org.springframework.boot:spring-boot
        org.apache.commons:commons-text commons-collections:commons-collections org.yaml:snakeyaml
        io.netty:netty-handler io.netty:netty-codec-http org.eclipse.jetty:jetty-server
        org.apache.tomcat.embed:tomcat-embed-core com.google.guava:guava com.google.protobuf:protobuf-java
        org.keycloak:keycloak-core org.apache.struts:struts2-core ch.qos.logback:logback-classic
        org.bouncycastle:bcprov-jdk18on org.apache.zookeeper:zookeeper org.apache.kafka:kafka-clients
        com.h2database:h2 org.postgresql:postgresql org.apache.httpcomponents:httpclient
        xerces:xercesImpl com.thoughtworks.xstream:xstream org.hibernate:hibernate-core""",
    "Go": """stdlib toolchain golang.org/x/net golang.org/x/crypto golang.org/x/text golang.org/x/sys
        golang.org/x/image github.com/gin-gonic/gin github.com/gorilla/websocket github.com/gogo/protobuf
        google.golang.org/grpc google.golang.org/protobuf github.com/docker/docker
        github.com/containerd/containerd github.com/opencontainers/runc k8s.io/kubernetes
        k8s.io/apimachinery github.com/hashicorp/vault github.com/prometheus/client_golang
        github.com/go-git/go-git/v5 github.com/labstack/echo/v4 github.com/golang-jwt/jwt/v4
        github.com/miekg/dns helm.sh/helm/v3 code.gitea.io/gitea github.com/minio/minio""",
    "crates.io": """openssl hyper tokio http regex smallvec time chrono rustls ring serde_yaml
        crossbeam-channel h2 rand_core sodiumoxide tar zip image ncurses lz4-sys futures-util
        actix-web rocket diesel sqlx tungstenite mio nix""",
    "RubyGems": """rails actionpack activerecord activesupport rack nokogiri devise puma sinatra loofah
        rails-html-sanitizer actionview json rexml omniauth redcarpet kramdown mail thor""",
    "NuGet": """Newtonsoft.Json System.Text.Encodings.Web Microsoft.AspNetCore.App.Runtime.win-x64
        Microsoft.NETCore.App.Runtime.linux-x64 System.Net.Http Microsoft.Data.SqlClient Azure.Identity
        log4net NLog SharpZipLib Umbraco.Cms YamlDotNet System.Drawing.Common Npgsql""",
    "Packagist": """laravel/framework symfony/http-kernel symfony/security-http guzzlehttp/guzzle
        twig/twig phpmailer/phpmailer drupal/core typo3/cms-core magento/community-edition
        phpunit/phpunit league/flysystem monolog/monolog dompdf/dompdf smarty/smarty""",
    "Pub": "http dio flutter_secure_storage shelf path_provider agent_dart webview_flutter url_launcher",
    "Hex": "plug phoenix ecto cowboy hackney jason mtproto_proxy sweet_xml absinthe",
    "SwiftURL": """github.com/vapor/vapor github.com/apple/swift-nio github.com/sparkle-project/Sparkle
        github.com/Alamofire/Alamofire github.com/apple/swift-nio-http2""",
    "Bitnami": """apache nginx wordpress gitlab drupal joomla magento moodle mediawiki redmine jenkins
        tomcat mysql mariadb postgresql mongodb redis rabbitmq kafka zookeeper elasticsearch kibana
        grafana prometheus node python php ruby golang airflow spark cassandra etcd consul vault
        keycloak harbor minio phpmyadmin discourse ghost odoo activemq argo-cd phpmailer superset
        jupyterhub matomo nats haproxy envoy memcached influxdb solr logstash fluentd kong mastodon
        wildfly openldap""",
    "Debian:12": """openssl curl glibc libxml2 zlib expat sqlite3 python3.11 nginx openssh git perl tiff
        libwebp systemd bind9 krb5 gnutls28 linux vim tar sudo postgresql-15 libx11 ghostscript imagemagick""",
    "Alpine:v3.18": """openssl curl musl libxml2 zlib expat sqlite busybox nginx openssh git perl tiff
        libwebp krb5 gnutls vim tar sudo postgresql15 libx11 ghostscript imagemagick apk-tools""",
    "OSS-Fuzz": """openssl ffmpeg imagemagick libxml2 harfbuzz freetype2 libarchive binutils wireshark gdal
        php mruby opensc ndpi skia libvips leptonica muparser file llvm poppler qpdf libtiff
        graphicsmagick arrow njs radare2 yara""",
}


def _invent(eco: str, a: str, b: str, org: str, x: float) -> str:
    """One invented name in the ecosystem's naming habits."""
    lo = org.lower()
    table = {
        "PyPI": (f"{a}-{b}", f"py{a}{b}", f"django-{a}-{b}", f"flask-{a}{b}", f"{a}{b}-python"),
        "npm": (f"{a}-{b}", f"@{lo}/{a}-{b}", f"{a}{b}.js", f"node-{a}-{b}"),
        "Maven": (f"org.{lo}.{a}:{a}-{b}", f"com.{lo}:{a}-{b}", f"io.{a}{b}:{a}-{b}-core"),
        "Go": (f"github.com/{org}/{a}-{b}", f"github.com/{org}/{a}{b}/v2", f"go.{a}.io/{b}"),
        "crates.io": (f"{a}-{b}", f"{a}_{b}", f"{a}{b}-rs"),
        "RubyGems": (f"{a}-{b}", f"{a}_{b}", f"rack-{a}-{b}"),
        "NuGet": (f"{a.title()}.{b.title()}", f"{org.title()}.{a.title()}.{b.title()}"),
        "Packagist": (f"{lo}/{a}-{b}",),
        "Pub": (f"{a}_{b}", f"flutter_{a}_{b}"),
        "Hex": (f"{a}_{b}", f"ex_{a}_{b}"),
        "SwiftURL": (f"github.com/{org}/{a.title()}{b.title()}",),
        "Debian:12": (f"lib{a}{b}", f"{a}-{b}", f"python3-{a}{b}", f"golang-{a}-{b}"),
        "Alpine:v3.18": (f"lib{a}{b}", f"{a}-{b}", f"py3-{a}{b}"),
    }
    spellings = table.get(eco, (f"lib{a}{b}", f"{a}{b}"))
    return spellings[int(x * len(spellings))]


def _pool(eco: str, size: int) -> tuple[str, ...]:
    draw = random.Random(f"stella-synthetic-names:{eco}").random
    names = dict.fromkeys(_POPULAR[eco].split())
    while len(names) < size:
        names.setdefault(_invent(eco, pick(draw, WORDS), pick(draw, WORDS), pick(draw, _ORGS), draw()))
    return tuple(names)


@dataclass(frozen=True, slots=True)
class Ecosystem:
    """An OSV ecosystem: its name, how its versions are spelled, and its package pool."""

    name: str
    versions: str  # pep440 | semver | maven | gem | nuget | deb | apk
    history: tuple[int, ...]  # release counts, at the quantile points
    names: tuple[str, ...]


# Releases per package. PyPI's are long because PyPA records list affected versions
# (median 27, p90 136 in the public data); elsewhere only ranges and SBOMs use them.
_LONG = (2, 8, 18, 45, 90, 170, 240, 450, 1100)
_SHORT = (2, 6, 10, 20, 40, 70, 100, 200, 400)
ECOSYSTEMS: dict[str, Ecosystem] = {
    name: Ecosystem(name, versions, history, _pool(name, size))
    for name, versions, history, size in (
        ("PyPI", "pep440", _LONG, 1500), ("npm", "semver", _SHORT, 1500), ("Maven", "maven", _SHORT, 1200),
        ("Go", "semver", _SHORT, 1200), ("crates.io", "semver", _SHORT, 600), ("RubyGems", "gem", _SHORT, 400),
        ("NuGet", "nuget", _SHORT, 400), ("Packagist", "semver", _SHORT, 400), ("Pub", "semver", _SHORT, 150),
        ("Hex", "semver", _SHORT, 150), ("SwiftURL", "semver", _SHORT, 60), ("Bitnami", "semver", _LONG, 62),
        ("Debian:12", "deb", _SHORT, 500), ("Alpine:v3.18", "apk", _SHORT, 400), ("OSS-Fuzz", "semver", _SHORT, 300),
    )
}  # fmt: skip

_PURL_TYPES = {"PyPI": "pypi", "npm": "npm", "Maven": "maven", "Go": "golang", "crates.io": "cargo",
               "RubyGems": "gem", "NuGet": "nuget", "Packagist": "composer", "Pub": "pub", "Hex": "hex",
               "SwiftURL": "swift", "Bitnami": "bitnami", "Debian:12": "deb", "Alpine:v3.18": "apk"}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Package:
    """Everything about one package that documents repeat, computed once."""

    name: str
    purl: str  # without version; "" for OSS-Fuzz projects, which have none
    json: str  # the OSV ``package`` object, with purl when there is one
    json_bare: str  # ... without purl (Go vulndb, half of GHSA, OSS-Fuzz)
    repo: str
    history: tuple[str, ...]


def _purl(eco: str, name: str) -> str:
    kind = _PURL_TYPES.get(eco)
    if kind is None:
        return ""
    if eco == "Maven":
        return "pkg:maven/" + name.replace(":", "/")
    if eco == "npm":
        return "pkg:npm/" + name.replace("@", "%40")
    if eco == "PyPI":
        return "pkg:pypi/" + name.lower().replace("_", "-").replace(".", "-")
    if kind in ("deb", "apk"):
        return f"pkg:{kind}/{eco.split(':')[0].lower()}/{name}?arch=source"
    return f"pkg:{kind}/{name}"


def _repo(name: str) -> str:
    """Where the source lives; stable per name, so commits and issues agree across records."""
    if name.startswith("github.com/"):
        return "https://" + "/".join(name.split("/")[:3])
    short = name.rsplit("/", 1)[-1].rsplit(":", 1)[-1].lower()
    return f"https://github.com/{_ORGS[zlib.crc32(name.encode()) % len(_ORGS)]}/{short}"


@functools.cache
def package(eco: str, name: str) -> Package:
    e = ECOSYSTEMS[eco]
    purl = _purl(eco, name)
    bare = f'{{"ecosystem":"{eco}","name":{enc(name)}}}'
    full = f'{{"ecosystem":"{eco}","name":{enc(name)},"purl":"{purl}"}}' if purl else bare
    go_major = None
    if eco == "Go":
        suffix = name.rsplit("/", 1)[-1]
        go_major = (
            int(suffix[1:]) if suffix[:1] == "v" and suffix[1:].isdigit() else 1 if "." not in name else 0
        )
    return Package(name, purl, full, bare, _repo(name), _history(e.versions, e.history, name, go_major))


def _spell(style: str, major: int, minor: int, patch: int, pre: int, flavour: float) -> str:
    """A release (``pre`` = 0) or a pre-release of it, spelled validly for the ecosystem."""
    base = f"{major}.{minor}.{patch}"
    if style == "pep440":
        if flavour < 0.3 and patch == 0:
            base = f"{major}.{minor}"
        return base + (("rc", "b", "a")[pre % 3] + str(pre) if pre else "")
    if style == "maven":
        if flavour < 0.25:  # JBoss-style qualifiers
            return base + (f".{('CR', 'Beta', 'Alpha')[pre % 3]}{pre}" if pre else ".Final")
        return base + (f"-{('RC', 'M', 'alpha')[pre % 3]}{pre}" if pre else "")
    if style == "gem":
        return base + (f".{('rc', 'beta', 'alpha')[pre % 3]}{pre}" if pre else "")
    if style == "nuget":
        return base + (f"-preview.{pre}" if pre else "")
    if style == "deb":
        return base + (f"~rc{pre}" if pre else "") + f"-{1 + int(flavour * 7) % 3}"
    if style == "apk":
        return base + (f"_rc{pre}" if pre else "") + f"-r{int(flavour * 11) % 4}"
    return base + (f"-{('rc', 'beta', 'alpha')[pre % 3]}.{pre}" if pre else "")  # SemVer


def _history(style: str, lengths: tuple[int, ...], name: str, go_major: int | None) -> tuple[str, ...]:
    """Releases in ascending order, each pre-release just before its release.

    A Go module's major version is fixed by its path (``/v2`` is major 2, no suffix is 0
    or 1), so Go histories never change major.
    """
    draw = random.Random(f"stella-synthetic-history:{style}:{name}").random
    count = quant(draw, lengths)
    flavour = draw()
    major, minor, patch = (0 if draw() < 0.45 else 1 + int(draw() * 5)), int(draw() * 4), 0
    if go_major is not None:
        major = go_major if go_major >= 1 else min(major, 1)  # 0 means "v0 or v1"
    bump_major = 0.94 if go_major is None else 1.0
    out: list[str] = []
    while len(out) < count:
        r = draw()
        if r < 0.7:
            patch += 1
        elif r < bump_major:
            minor, patch = minor + 1, 0
        else:
            major, minor, patch = major + 1, 0, 0
        if patch == 0 and draw() < 0.15:
            out.append(_spell(style, major, minor, patch, 1 + int(draw() * 3), flavour))
        out.append(_spell(style, major, minor, patch, 0, flavour))
    return tuple(out)


def release(u: Draw, eco: str, p: Package) -> tuple[str, str]:
    """One released version of ``p`` and its versioned purl (SBOM components, VEX products).

    Go modules spell versions with a ``v`` outside OSV; distro packages name the binary
    architecture and the distribution.
    """
    version = pick(u, p.history)
    if eco == "Go":
        version = "v" + version
    if eco == "Maven":
        return version, f"{p.purl}@{version}?type=jar"
    if "?" in p.purl:
        distro = eco.lower().replace(":", "-")
        return version, p.purl.replace("?arch=source", f"@{version}?arch=amd64&distro={distro}")
    return version, f"{p.purl}@{version}"


def events(u: Draw, hist: Sequence[str], intervals: int, zero: str) -> tuple[list[str], list[str], str]:
    """OSV events over up to ``intervals`` disjoint affected spans.

    Returns the events text of each span, the versions covered, and the first fixed
    version. Most spans start at the ecosystem's zero and end in ``fixed``; a few end in
    ``last_affected`` and a few have no fix yet, as in the real feeds.
    """
    n = len(hist)
    cuts = sorted({int(u() * n) for _ in range(2 * intervals)})
    if len(cuts) % 2 == 0 and u() < 0.04:
        cuts.pop()
    from_zero = u() < 0.6
    spans: list[str] = []
    covered: list[str] = []
    first_fix = ""
    for j in range(0, len(cuts), 2):
        start = 0 if j == 0 and from_zero else cuts[j]
        introduced = f'{{"introduced":"{zero if j == 0 and from_zero else hist[start]}"}}'
        if j + 1 == len(cuts):
            spans.append(introduced)
            covered += hist[start:]
            break
        stop = cuts[j + 1]
        covered += hist[start:stop]
        if u() < 0.06:
            spans.append(f'{introduced},{{"last_affected":"{hist[stop - 1]}"}}')
        else:
            spans.append(f'{introduced},{{"fixed":"{hist[stop]}"}}')
            first_fix = first_fix or hist[stop]
    return spans, covered, first_fix or hist[-1]


def git_events(u: Draw) -> str:
    """GIT range events: introduced at the root or a commit, fixed on one or more branches."""
    text = '{"introduced":"0"}' if u() < 0.6 else f'{{"introduced":"{sha1_like(u)}"}}'
    for _ in range(1 + int(u() * u() * 4)):
        text += f',{{"fixed":"{sha1_like(u)}"}}'
    return text
