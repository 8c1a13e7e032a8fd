#!/usr/bin/env bash
# Fills fuzz/corpus/<target>/ with seeds taken, at run time, from real material (nothing is copied
# into the repository): the amoCRM webhook captures and the documented amoCRM error bodies in the
# team folder (<repo>/../shared, or TEAM_DIR / AMOCRM_CAPTURES_DIR), the API Gateway sample events
# in events/, and the python-signed initData sample of the Telegram unit tests.
# Needs jq and base64. Safe to rerun: it only adds files.
set -euo pipefail

fuzz=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$fuzz")
team=${TEAM_DIR:-$repo/../shared}
captures=${AMOCRM_CAPTURES_DIR:-$team/captures/amocrm}
corpus=$fuzz/corpus

for tool in jq base64; do
    command -v "$tool" >/dev/null || { echo "seed.sh needs $tool" >&2; exit 1; }
done
[[ -d $captures ]] || { echo "amoCRM captures not found at $captures (set AMOCRM_CAPTURES_DIR)" >&2; exit 1; }
mkdir -p "$corpus"/{webhook,lead_intake,telegram_init_data,amocrm_problem}

# The body of an API Gateway event, decoded when it is base64.
event_body() {
    if [[ $(jq -r '.isBase64Encoded // false' "$1") == true ]]; then
        jq -j '.body' "$1" | base64 -d
    else
        jq -j '.body' "$1"
    fi
}

# webhook: every capture as amoCRM sent it. One author prefixed the body with a URL; the
# JSON captures were decoded by their authors and stay as they are (they seed the refusals).
for f in "$captures"/webhook_*; do
    name=$(basename "$f")
    sed 's|^http://foo\.appspot\.com/?||' "$f" >"$corpus/webhook/capture-$name"
done
event_body "$repo/events/amocrm-webhook-status-142.json" >"$corpus/webhook/event-status-142"

# lead_intake: the sample POST /leads bodies, JSON and form.
for f in "$repo"/events/lead-ingest-post-leads-*.json; do
    event_body "$f" >"$corpus/lead_intake/event-$(basename "$f" .json)"
done

# telegram_init_data: mode byte 0 + raw initData (the python-signed sample verifies with the
# token and clock the target uses); mode byte 1 + bytes for the signed-then-edited mode.
sample=$(grep -o 'query_id=AAHdF6IQ[^"]*' "$repo/shared/src/telegram/init_data.rs" | head -1)
[[ -n $sample ]] || { echo "initData sample not found in shared/src/telegram/init_data.rs" >&2; exit 1; }
{ printf '\x00'; printf '%s' "$sample"; } >"$corpus/telegram_init_data/raw-python-signed"
{ printf '\x00'; jq -j '.headers.authorization | sub("^tma "; "")' "$repo/events/lead-ingest-post-leads-tma.json"; } \
    >"$corpus/telegram_init_data/raw-tma-event"
{ printf '\x01'; printf 'seed-%02d' $(seq 1 12); } >"$corpus/telegram_init_data/signed-edited"

# amocrm_problem: every JSON body quoted in the team's amoCRM API notes, under the statuses
# that lead to different hints; header = status (2 bytes), flags, plant position (2 bytes).
n=0
while IFS= read -r body; do
    for status in 400 401 403 429 500; do
        n=$((n + 1))
        {
            printf "\\x$(printf %02x $((status >> 8)))\\x$(printf %02x $((status & 255)))\\x01\\x00\\x10"
            printf '%s' "$body"
        } >"$corpus/amocrm_problem/doc-$n"
    done
done < <(grep -o '`{"[^`]*}`' "$team/amocrm-api.md" | tr -d '`' | sort -u)
{ printf '\x01\x93\x02\x00\x20'; printf '<html>\r\n<head><title>403 Forbidden</title></head>\r\n<body>nginx</body>\r\n</html>\r\n'; } \
    >"$corpus/amocrm_problem/nginx-403"

for target in webhook lead_intake telegram_init_data amocrm_problem; do
    echo "corpus/$target: $(find "$corpus/$target" -type f | wc -l) files"
done
