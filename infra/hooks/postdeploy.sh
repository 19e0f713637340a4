#!/bin/sh
# azd postdeploy hook (macOS, Linux): deliver BlobCreated events of the incoming container to ingest_csv.
#
# Why a hook and not Bicep: the webhook URL carries the blob extension's system key (blobs_extension),
# which exists only after the code is deployed and the Functions host has indexed the Event Grid blob
# trigger. Safe to run again (a PUT creates or updates the subscription): `azd hooks run postdeploy`.
# postprovision.sh keeps the same subscription in step with the settings on `azd provision`.
HOOK=postdeploy
hooks_dir=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
# shellcheck source=infra/hooks/common.sh
. "$hooks_dir/common.sh"

check_az_subscription

# A request wakes a scaled-to-zero app so the host starts and creates its keys; any answer will do.
if command -v curl >/dev/null 2>&1; then
    curl --silent --output /dev/null --max-time 60 "https://${AZURE_FUNCTION_APP_HOSTNAME}/api/health" || true
fi
say "waiting for the blobs_extension key of ${app}..."
wait_for_key "$KEY_TRIES"
[ -n "$key" ] || fail "no blobs_extension key after $KEY_TRIES tries (last az message: $(last_error)). Check that ingest_csv is listed with 'az functionapp function list --subscription $sub -g $rg -n $app' (0 functions means the app failed to index), then run 'azd hooks run postdeploy'."
put_subscription
