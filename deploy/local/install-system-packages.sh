#!/usr/bin/env bash
# Installs, from Debian's packages, what the local platform needs and the machine lacks:
# PostgreSQL's server binaries, a Java 17+ runtime, Maven (for Kafka's jars), promtool (from
# the `prometheus` package: the tests check the Prometheus configuration, alert rules and every
# process's /metrics with it, and run its server to evaluate the Grafana dashboards), Node.js
# with npm (the tests run the AsyncAPI project's parser on the event contract:
# install-asyncapi-parser.sh) and Chromium (the tests render service reports in headless
# Chromium; the reporting service prints reports' PDFs with it when REPORTING_REPORT_CHROMIUM
# names it). Idempotent: installs only what is missing.
set -euo pipefail

missing=()
compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null || command -v postgres >/dev/null || missing+=(postgresql)
command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || missing+=(maven)
command -v promtool >/dev/null || missing+=(prometheus)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
command -v chromium >/dev/null || missing+=(chromium)

if ((${#missing[@]} == 0)); then
  exit 0
fi

echo "installing from Debian's packages: ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "need root (or sudo) to install ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
$sudo apt-get update -q
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"

# The `prometheus` package also brings a Prometheus server as a system service; the project
# needs only its promtool, so a server the package has just started is stopped and disabled.
if [[ " ${missing[*]} " == *" prometheus "* ]] && command -v systemctl >/dev/null \
  && systemctl is-active --quiet prometheus 2>/dev/null; then
  $sudo systemctl disable --now prometheus
fi
