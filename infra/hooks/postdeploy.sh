#!/bin/sh
# azd postdeploy hook (macOS, Linux): deliver BlobCreated events of the incoming container to ingest_csv.
#
# Why a hook and not Bicep: the webhook URL carries the blob extension's system key (blobs_extension),
# which exists only after the code is deployed and the Functions host has indexed the Event Grid blob
# trigger. Safe to run again (a PUT creates or updates the subscription). Run by hand with
# `sh infra/hooks/postdeploy.sh` after `azd env select <env>`.
set -eu

SUBSCRIPTION_NAME="bobo-incoming-to-ingest-csv"
EVENTGRID_API_VERSION="2025-02-15"

fail() {
    echo "postdeploy: error: $*" >&2
    exit 1
}

command -v az >/dev/null 2>&1 || fail "the Azure CLI (az) is required; see README.md, Deployment > Prerequisites"

# azd passes its environment values to hooks; load them when the script is run by hand.
if [ -z "${AZURE_FUNCTION_APP_NAME:-}" ] && command -v azd >/dev/null 2>&1; then
    eval "$(azd env get-values)"
fi

for name in AZURE_RESOURCE_GROUP AZURE_FUNCTION_APP_NAME AZURE_FUNCTION_APP_HOSTNAME \
    BOBO_EVENTGRID_SYSTEM_TOPIC_NAME BOBO_INCOMING_CONTAINER_NAME AZURE_KEY_VAULT_NAME \
    ATHOC_CLIENT_SECRET_KV_NAME ATHOC_PASSWORD_KV_NAME; do
    eval "value=\${$name:-}"
    [ -n "$value" ] || fail "$name is not set: run 'azd provision' first (it comes from infra/main.bicep outputs)"
done

rg="$AZURE_RESOURCE_GROUP"
app="$AZURE_FUNCTION_APP_NAME"
topic="$BOBO_EVENTGRID_SYSTEM_TOPIC_NAME"

# 1. The blobs_extension key appears once the host has started with the new code. A request wakes a
#    scaled-to-zero app; any answer will do.
if command -v curl >/dev/null 2>&1; then
    curl --silent --output /dev/null --max-time 60 "https://${AZURE_FUNCTION_APP_HOSTNAME}/api/health" || true
fi
echo "postdeploy: waiting for the blobs_extension key of ${app}..."
key=""
attempt=1
while [ "$attempt" -le 24 ]; do
    key=$(az functionapp keys list --resource-group "$rg" --name "$app" \
        --query "systemKeys.blobs_extension" --output tsv 2>/dev/null || true)
    [ -n "$key" ] && break
    sleep 15
    attempt=$((attempt + 1))
done
[ -n "$key" ] || fail "no blobs_extension key after 6 minutes. Check that ingest_csv is listed with 'az functionapp function list -g $rg -n $app' (0 functions means the app failed to index), then run this script again."
case "$key" in
    *[!A-Za-z0-9_=-]*) fail "the blobs_extension key has an unexpected format" ;;
esac

# 2. Create or update the subscription. The body goes through a private temporary file, so the key never
#    appears on a command line and no shell has to quote the '&' in the URL.
umask 077
body=$(mktemp)
trap 'rm -f "$body"' EXIT INT TERM
cat >"$body" <<EOF
{
  "properties": {
    "destination": {
      "endpointType": "WebHook",
      "properties": {
        "endpointUrl": "https://${AZURE_FUNCTION_APP_HOSTNAME}/runtime/webhooks/blobs?functionName=Host.Functions.ingest_csv&code=${key}",
        "maxEventsPerBatch": 1,
        "preferredBatchSizeInKilobytes": 64
      }
    },
    "filter": {
      "includedEventTypes": ["Microsoft.Storage.BlobCreated"],
      "subjectBeginsWith": "/blobServices/default/containers/${BOBO_INCOMING_CONTAINER_NAME}/blobs/",
      "advancedFilters": [
        {
          "operatorType": "StringIn",
          "key": "data.api",
          "values": ["PutBlob", "PutBlockList", "CopyBlob", "FlushWithClose"]
        }
      ]
    },
    "eventDeliverySchema": "EventGridSchema",
    "retryPolicy": {
      "maxDeliveryAttempts": 30,
      "eventTimeToLiveInMinutes": 1440
    }
  }
}
EOF

topic_id=$(az eventgrid system-topic show --resource-group "$rg" --name "$topic" --query id --output tsv)
[ -n "$topic_id" ] || fail "system topic $topic not found in $rg"
echo "postdeploy: creating Event Grid subscription ${SUBSCRIPTION_NAME} (BlobCreated in ${BOBO_INCOMING_CONTAINER_NAME} -> ingest_csv)..."
az rest --method put \
    --url "${topic_id}/eventSubscriptions/${SUBSCRIPTION_NAME}?api-version=${EVENTGRID_API_VERSION}" \
    --body "@${body}" --output none

# 3. Event Grid validates the webhook before the subscription is usable; wait for the outcome.
state=""
attempt=1
while [ "$attempt" -le 36 ]; do
    state=$(az eventgrid system-topic event-subscription show --resource-group "$rg" \
        --system-topic-name "$topic" --name "$SUBSCRIPTION_NAME" \
        --query provisioningState --output tsv 2>/dev/null || true)
    case "$state" in
        Succeeded) break ;;
        Failed | Canceled) fail "the Event Grid subscription is $state (webhook validation failed?). Check that ingest_csv is indexed with the EventGrid source, then run this script again." ;;
    esac
    sleep 5
    attempt=$((attempt + 1))
done
[ "$state" = "Succeeded" ] || fail "the Event Grid subscription is still '${state:-unknown}' after 3 minutes"
echo "postdeploy: Event Grid subscription ready."

# 4. Remind, never fail: the AtHoc secrets must be in Key Vault (names only are listed, never values).
present=$(az keyvault secret list --vault-name "$AZURE_KEY_VAULT_NAME" --query "[].name" --output tsv 2>/dev/null || echo "?")
for secret in "$ATHOC_CLIENT_SECRET_KV_NAME" "$ATHOC_PASSWORD_KV_NAME"; do
    if ! printf '%s\n' "$present" | grep -qx "$secret"; then
        echo "postdeploy: note: Key Vault secret '$secret' is missing (or you cannot list secrets)."
        echo "  Set it without writing it to a file or your shell history (README.md, Deployment > AtHoc secrets):"
        echo "  read -rs value && az keyvault secret set --vault-name $AZURE_KEY_VAULT_NAME --name $secret --value \"\$value\" --output none; unset value"
    fi
done
