# Shared by the scripts: install what a fresh machine lacks, keep one cargo target directory.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/polarway/target}"
mkdir -p "$CARGO_TARGET_DIR"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# ensure_apt COMMAND PACKAGE: install PACKAGE from Debian's packages unless COMMAND exists.
_apt_updated=""
ensure_apt() {
  command -v "$1" >/dev/null 2>&1 && return 0
  if [ -z "$_apt_updated" ]; then as_root apt-get update -qq; _apt_updated=1; fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
}

ensure_build_tools() {
  command -v cargo >/dev/null 2>&1 || { echo "Rust (cargo) is required: https://rustup.rs" >&2; exit 1; }
  ensure_apt protoc protobuf-compiler   # tonic-prost-build compiles proto/ with protoc
}

# moto_server (PyPI, pinned) in a tools virtualenv: the S3-compatible server of the s3 tests.
ensure_moto() {
  local venv="$HOME/.cache/polarway/tools-venv"
  [ -x "$venv/bin/moto_server" ] && return 0
  command -v python3 >/dev/null 2>&1 && python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || {
    if [ -z "$_apt_updated" ]; then as_root apt-get update -qq; _apt_updated=1; fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv >/dev/null
  }
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check 'moto[server]==5.2.5'
}
