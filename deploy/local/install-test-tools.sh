#!/usr/bin/env bash
# install-test-tools.sh: installs what callhook's test suite needs beyond the Rust toolchain.
# Idempotent: installs only what is missing, says what it did, exits non-zero when it cannot.
#
#   prometheus, promtool   Debian's `prometheus` package. tests/deploy/ runs
#                          `promtool check rules|config` and `promtool test rules`;
#                          tests/observability.rs scrapes a real callhook with `prometheus`.
#   python3 + PyYAML       tests/deploy/ parses every YAML file under deploy/ with it
#                          (Debian's python3-yaml when no python3 on PATH can `import yaml`).
#   systemd-analyze        Debian's `systemd` package: tests/deploy/ verifies the unit under
#                          deploy/systemd/, scores its exposure and expands its syscall filter.
#   OpenSSL headers        librdkafka is built with TLS against the system OpenSSL
#                          (libssl-dev, found through pkg-config); the official Rust images
#                          have both, a bare Debian does not.
#
# Installing uses apt-get (as root, or through sudo). `apt-get update` runs only when
# something has to be installed. The Debian package would start a prometheus daemon on
# :9090 where no systemd runs (containers, CI); a temporary policy-rc.d prevents that:
# only the binaries are wanted here.
#
# Environment:
#   CALLHOOK_TOOLS_NO_INSTALL=1   only check; fail instead of installing
set -euo pipefail

log() { echo "install-test-tools: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

missing_pkgs=()

have_yaml_python() {
  local py
  for py in python3 /usr/bin/python3; do
    if command -v "$py" >/dev/null 2>&1 && "$py" -c 'import yaml' >/dev/null 2>&1; then
      echo "$py"
      return 0
    fi
  done
  return 1
}

if command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; then
  log "ok: $(promtool --version 2>&1 | head -n1) ($(command -v promtool)), prometheus at $(command -v prometheus)"
else
  missing_pkgs+=(prometheus)
fi

if py=$(have_yaml_python); then
  log "ok: $py can import yaml (PyYAML $("$py" -c 'import yaml; print(yaml.__version__)'))"
else
  missing_pkgs+=(python3-yaml)
fi

if command -v systemd-analyze >/dev/null 2>&1; then
  log "ok: $(systemd-analyze --version | head -n1) ($(command -v systemd-analyze))"
else
  missing_pkgs+=(systemd)
fi
if command -v pkg-config >/dev/null 2>&1 && pkg-config --exists openssl; then
  log "ok: OpenSSL $(pkg-config --modversion openssl) headers (pkg-config)"
else
  missing_pkgs+=(libssl-dev pkg-config)
fi

if [ ${#missing_pkgs[@]} -eq 0 ]; then
  log "nothing to install"
  exit 0
fi

[ "${CALLHOOK_TOOLS_NO_INSTALL:-}" = 1 ] && die "missing: ${missing_pkgs[*]} (CALLHOOK_TOOLS_NO_INSTALL=1)"
command -v apt-get >/dev/null 2>&1 || die "missing: ${missing_pkgs[*]}, and apt-get is not available: install them by hand"

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || die "missing: ${missing_pkgs[*]}; not root and no sudo: run as root"
  SUDO=(sudo)
fi

# Where systemd is not PID 1, keep the package's postinst from starting a daemon.
policy=/usr/sbin/policy-rc.d
placed_policy=0
cleanup() {
  if [ "$placed_policy" = 1 ]; then "${SUDO[@]}" rm -f "$policy"; fi
}
trap cleanup EXIT
if [ "$(cat /proc/1/comm 2>/dev/null)" != systemd ] && [ ! -e "$policy" ]; then
  printf '#!/bin/sh\n# placed by callhook install-test-tools.sh for the length of one apt-get install\nexit 101\n' |
    "${SUDO[@]}" tee "$policy" >/dev/null
  "${SUDO[@]}" chmod 0755 "$policy"
  placed_policy=1
fi

log "installing Debian packages: ${missing_pkgs[*]} (apt-get update first) ..."
t0=$SECONDS
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq || die "apt-get update failed"
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing_pkgs[@]}" >&2 ||
  die "apt-get install ${missing_pkgs[*]} failed"
log "installed ${missing_pkgs[*]} in $((SECONDS - t0)) s"

# Verify, loudly.
command -v promtool >/dev/null 2>&1 || die "promtool still not on PATH after installing prometheus"
command -v prometheus >/dev/null 2>&1 || die "prometheus still not on PATH after installing prometheus"
py=$(have_yaml_python) || die "no python3 on PATH can import yaml after installing python3-yaml"
pkg-config --exists openssl 2>/dev/null || die "pkg-config finds no OpenSSL after installing libssl-dev"
command -v systemd-analyze >/dev/null 2>&1 || die "systemd-analyze still not on PATH after installing systemd"
log "ok: $(promtool --version 2>&1 | head -n1); $py has PyYAML"
