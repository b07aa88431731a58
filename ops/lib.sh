# Shared by the ops/ scripts (sourced, not run): where this checkout is, how to run walltrack, the service's settings.
# WALLTRACK_ENV_FILE (default /etc/walltrack/walltrack.env) is read when readable, so a script acts on the
# service's data; WALLTRACK_SERVICE names the unit (default walltrack).
OPS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$OPS_DIR")
SERVICE=${WALLTRACK_SERVICE:-walltrack}
ENV_FILE=${WALLTRACK_ENV_FILE:-/etc/walltrack/walltrack.env}

die() { echo "$(basename "$0"): $*" >&2; exit 2; }

load_env() {
  if [ -r "$ENV_FILE" ]; then
    set -a
    # shellcheck disable=SC1090
    . "$ENV_FILE"
    set +a
  fi
}

have_systemd() { [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; }

unit_installed() { systemctl cat "$SERVICE.service" >/dev/null 2>&1; }

# Run walltrack from this checkout: its .venv (what the service runs), else `uv run`. Root acting on an installed
# service's data dir runs it as the service's user, as the service does (the embedded PostgreSQL is theirs).
run_walltrack() {
  local cmd
  if [ -x "$ROOT/.venv/bin/walltrack" ]; then
    cmd=("$ROOT/.venv/bin/walltrack")
  elif command -v uv >/dev/null 2>&1; then
    cmd=(uv run --project "$ROOT" --frozen walltrack)
  else
    die "no $ROOT/.venv/bin/walltrack and no uv: run \`uv sync --frozen\` in $ROOT"
  fi
  local owner=""
  [ -n "${WALLTRACK_DATA_DIR:-}" ] && owner=$(stat -c %U "$WALLTRACK_DATA_DIR" 2>/dev/null || true)
  if [ "$(id -u)" = 0 ] && [ -n "$owner" ] && [ "$owner" != root ] && id -u "$owner" >/dev/null 2>&1; then
    # the service's runtime dir (the embedded PostgreSQL's lock) and home, as the unit gives them
    exec runuser -u "$owner" -m -- env HOME="$WALLTRACK_DATA_DIR" XDG_RUNTIME_DIR="$WALLTRACK_DATA_DIR/run" \
      "${cmd[@]}" "$@"
  fi
  exec "${cmd[@]}" "$@"
}
