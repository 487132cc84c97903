# Shared by the scripts: install what a fresh machine lacks, keep one cargo target directory.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/polarway/target}"
mkdir -p "$CARGO_TARGET_DIR"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# apt_install PACKAGE...: install from Debian's packages (the package lists are updated once).
_apt_updated=""
apt_install() {
  if [ -z "$_apt_updated" ]; then as_root apt-get update -qq; _apt_updated=1; fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# ensure_apt COMMAND PACKAGE: install PACKAGE unless COMMAND exists.
ensure_apt() {
  command -v "$1" >/dev/null 2>&1 || apt_install "$2"
}

# python3 with venv and ensurepip, which a bare Debian lacks (python3-venv).
ensure_python_venv() {
  command -v python3 >/dev/null 2>&1 && python3 -c 'import venv, ensurepip' >/dev/null 2>&1 && return 0
  apt_install python3 python3-venv
}

ensure_build_tools() {
  command -v cargo >/dev/null 2>&1 || { echo "Rust (cargo) is required: https://rustup.rs" >&2; exit 1; }
  ensure_apt protoc protobuf-compiler   # tonic-prost-build compiles proto/ with protoc
}

# moto_server (PyPI, pinned) in a tools virtualenv: the S3-compatible server of the s3 tests.
ensure_moto() {
  local venv="$HOME/.cache/polarway/tools-venv"
  [ -x "$venv/bin/moto_server" ] && return 0
  ensure_python_venv
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check 'moto[server]==5.2.5'
}
