#!/bin/sh
# Renders config.yml with the Discord webhook URL and starts Alertmanager.
#
# Alertmanager 0.25 reads the Slack URL from a file (slack_api_url_file) but has
# no file field for Discord (discord_configs.webhook_url_file came in 0.28), and
# it never expands environment variables in its configuration. So the shipped
# config.yml holds a placeholder URL, and this script writes a copy with the
# real URL — from the file named by DISCORD_WEBHOOK_URL_FILE (a Docker secret),
# else from DISCORD_WEBHOOK_URL — to a private file outside the repository,
# then execs Alertmanager on it. Without either, the placeholder stays and only
# Discord delivery fails (AlertmanagerNotificationsFailing says so).
#
# Usage: render-secrets.sh ALERTMANAGER [FLAG]...   (without --config.file)
# Environment:
#   AM_CONFIG_IN    shipped configuration (default /etc/alertmanager/config.yml)
#   AM_CONFIG_OUT   rendered copy (default /alertmanager/config.rendered.yml);
#                   templates/ beside AM_CONFIG_IN is linked beside it
set -eu

in=${AM_CONFIG_IN:-/etc/alertmanager/config.yml}
out=${AM_CONFIG_OUT:-/alertmanager/config.rendered.yml}
placeholder='https://discord.invalid/api/webhooks/RENDERED-FROM-DISCORD_WEBHOOK_URL_FILE'

url=
if [ -n "${DISCORD_WEBHOOK_URL_FILE:-}" ]; then
    url=$(cat "$DISCORD_WEBHOOK_URL_FILE")
elif [ -n "${DISCORD_WEBHOOK_URL:-}" ]; then
    url=$DISCORD_WEBHOOK_URL
fi
# Strip surrounding whitespace (a trailing newline in the secret file).
url=$(printf '%s' "$url" | tr -d ' \t\r\n')
if [ -z "$url" ]; then
    echo "render-secrets.sh: no DISCORD_WEBHOOK_URL_FILE or DISCORD_WEBHOOK_URL; Discord notifications will fail" >&2
    url=$placeholder
fi
case $url in
    *"'"*) echo "render-secrets.sh: the Discord webhook URL must not contain a quote" >&2; exit 2 ;;
esac

umask 077
outdir=$(dirname "$out")
mkdir -p "$outdir"
# Plain string replacement (no sed/awk escapes): the URL is taken literally.
URL=$url PLACEHOLDER=$placeholder awk '{
    line = $0; done = ""
    while ((i = index(line, ENVIRON["PLACEHOLDER"])) > 0) {
        done = done substr(line, 1, i - 1) ENVIRON["URL"]
        line = substr(line, i + length(ENVIRON["PLACEHOLDER"]))
    }
    print done line
}' "$in" > "$out.tmp"
mv "$out.tmp" "$out"

# config.yml names its templates relative to itself.
indir=$(cd "$(dirname "$in")" && pwd)
if [ -d "$indir/templates" ] && [ "$indir" != "$(cd "$outdir" && pwd)" ]; then
    ln -sfn "$indir/templates" "$outdir/templates"
fi

exec "$@" --config.file="$out"
