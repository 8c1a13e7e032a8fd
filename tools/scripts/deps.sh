#!/usr/bin/env bash
# Installs the Python tools that `make run` and `make test` need into ./.venv (repo root):
# moto (the AWS imitation) and aws-sam-cli (template lint, build, deploy). With --deploy it also
# adds cargo-lambda (builds the arm64 Lambda binaries for `sam build`) and the aarch64 Rust target;
# with --bench, the seed's Python stack that `make bench` runs beside ours.
#
# Idempotent: a stamp in .venv records what was installed (versions, Python, pins); when nothing
# changed a rerun returns at once. Nothing is installed outside .venv (except, with --deploy, the
# Rust target, which rustup keeps per user). Works offline but for PyPI; safe with CI=true.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="$ROOT/.venv"
SCRIPTS="$ROOT/tools/scripts"
PYTHON="${PYTHON:-python3}"
ARM_TARGET="aarch64-unknown-linux-gnu"

usage() {
    cat <<USAGE
usage: tools/scripts/deps.sh [--deploy] [--bench]
  (no option)  moto[server] and aws-sam-cli into .venv
  --deploy     also cargo-lambda into .venv and the Rust target $ARM_TARGET (for sam build)
  --bench      also FastAPI, uvicorn and aiohttp (the seed's stack in make bench)
USAGE
}

deploy=0
bench=0
for arg in "$@"; do
    case "$arg" in
        --deploy) deploy=1 ;;
        --bench) bench=1 ;;
        -h | --help) usage; exit 0 ;;
        *) echo "deps: unknown option: $arg" >&2; usage >&2; exit 2 ;;
    esac
done

say() { echo "deps: $*"; }

# A fingerprint of everything that decides what ends up in .venv: its Python and the pins.
fingerprint() {
    {
        "$VENV/bin/python" -c 'import sys; print(sys.version)'
        cat "$@"
    } | sha256sum | cut -d' ' -f1
}

print_locations() {
    say "venv:        $VENV"
    say "moto_server: $VENV/bin/moto_server"
    say "sam:         $VENV/bin/sam"
    if [[ $deploy == 1 ]]; then
        say "cargo-lambda: $VENV/bin/cargo-lambda (put $VENV/bin first on PATH for sam build)"
    fi
}

# Runs one installation step unless its stamp says it is already done.
#   $1 = stamp name, rest = requirement files (constraints.txt is always applied)
install_step() {
    local stamp="$VENV/.stamp-$1"
    shift
    local want
    want="$(fingerprint "$@" "$SCRIPTS/constraints.txt")"
    if [[ -f $stamp && "$(cat "$stamp")" == "$want" ]]; then
        return 0
    fi
    local args=()
    for f in "$@"; do args+=(-r "$f"); done
    say "pip install ${args[*]} -c tools/scripts/constraints.txt (about a minute the first time)"
    local started=$SECONDS
    "$VENV/bin/python" -m pip install --quiet --no-input --disable-pip-version-check \
        --progress-bar off "${args[@]}" -c "$SCRIPTS/constraints.txt"
    echo "$want" >"$stamp"
    say "installed in $((SECONDS - started)) s"
}

command -v "$PYTHON" >/dev/null || { say "no $PYTHON on PATH: install Python 3.10 or newer" >&2; exit 1; }
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
    say "$PYTHON is $("$PYTHON" -V 2>&1); moto and aws-sam-cli need Python 3.10 or newer" >&2
    exit 1
fi

# Two runs at once (a developer's make and an editor's, say) must not install over each other.
if command -v flock >/dev/null; then
    exec 9>"${TMPDIR:-/tmp}/deps-$(echo "$ROOT" | sha256sum | cut -c1-12).lock"
    flock 9
fi

# A venv whose interpreter has gone (Python upgraded or moved) is rebuilt from scratch.
if [[ -d $VENV ]] && ! "$VENV/bin/python" -c '' 2>/dev/null; then
    say "$VENV is broken (its Python is gone): recreating it"
    rm -rf "$VENV"
fi
if [[ ! -d $VENV ]]; then
    say "creating $VENV with $("$PYTHON" -V 2>&1)"
    "$PYTHON" -m venv "$VENV"
fi

install_step base "$SCRIPTS/requirements.txt"
if [[ $deploy == 1 ]]; then
    install_step deploy "$SCRIPTS/requirements.txt" "$SCRIPTS/requirements-deploy.txt"
    if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx "$ARM_TARGET"; then
        say "rustup target add $ARM_TARGET (Lambda runs on arm64)"
        rustup target add "$ARM_TARGET"
    fi
fi

if [[ $bench == 1 ]]; then
    install_step bench "$SCRIPTS/requirements.txt" "$SCRIPTS/requirements-bench.txt"
fi

print_locations
