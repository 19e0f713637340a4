# shellcheck shell=sh
# Shared by the azd hooks postprovision.sh and postdeploy.sh (POSIX sh; sourced, never run on its own).
#
# Every az call names the azd environment's subscription: az and azd keep separate logins, and az's own
# default subscription may be another one. `az rest` takes its target from the URL alone, so it gets full
# resource URLs under /subscriptions/$AZURE_SUBSCRIPTION_ID instead.
#
# Poll counts and intervals can be lowered through the environment (the offline tests in tests/infra use
# this); the defaults are the production values.
set -eu

SUBSCRIPTION_NAME="bobo-incoming-to-ingest-csv"
EVENTGRID_API_VERSION="2025-02-15"
WEB_API_VERSION="2024-04-01"
# shellcheck disable=SC2034 # read by the scripts that source this file
KEY_TRIES=${BOBO_HOOK_KEY_TRIES:-24}
KEY_INTERVAL=${BOBO_HOOK_KEY_INTERVAL_SECONDS:-15}
STATE_TRIES=${BOBO_HOOK_STATE_TRIES:-36}
STATE_INTERVAL=${BOBO_HOOK_STATE_INTERVAL_SECONDS:-5}
KV_TRIES=${BOBO_HOOK_KV_TRIES:-6}
KV_INTERVAL=${BOBO_HOOK_KV_INTERVAL_SECONDS:-20}
HOOK=${HOOK:-hook}

say() { echo "$HOOK: $*"; }

fail() {
    echo "$HOOK: error: $*" >&2
    exit 1
}

# Private scratch space for az's error output and the subscription body (it carries a key). Ctrl-C and
# kill stop the hook at once: the INT/TERM traps exit, and the EXIT trap removes the scratch space.
umask 077
scratch=$(mktemp -d)
cleanup() { rm -rf "$scratch"; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

command -v az >/dev/null 2>&1 || fail "the Azure CLI (az) is required; see docs/deployment.md, Prerequisites"

# azd passes its environment values to hooks; load them when the script is run by hand.
if [ -z "${AZURE_FUNCTION_APP_NAME:-}" ] && command -v azd >/dev/null 2>&1; then
    eval "$(azd env get-values)"
fi

for name in AZURE_SUBSCRIPTION_ID AZURE_RESOURCE_GROUP AZURE_FUNCTION_APP_NAME AZURE_FUNCTION_APP_HOSTNAME \
    BOBO_EVENTGRID_SYSTEM_TOPIC_NAME BOBO_INCOMING_CONTAINER_NAME AZURE_KEY_VAULT_NAME \
    ATHOC_CLIENT_SECRET_KV_NAME ATHOC_PASSWORD_KV_NAME; do
    eval "value=\${$name:-}"
    [ -n "$value" ] || fail "$name is not set: run 'azd provision' first (it comes from azd or from infra/main.bicep outputs), or select the environment with 'azd env select'"
done

sub="$AZURE_SUBSCRIPTION_ID"
rg="$AZURE_RESOURCE_GROUP"
app="$AZURE_FUNCTION_APP_NAME"
rg_url="/subscriptions/${sub}/resourceGroups/${rg}"
subscription_url="${rg_url}/providers/Microsoft.EventGrid/systemTopics/${BOBO_EVENTGRID_SYSTEM_TOPIC_NAME}/eventSubscriptions/${SUBSCRIPTION_NAME}?api-version=${EVENTGRID_API_VERSION}"

last_error() { tail -n 3 "$scratch/err" 2>/dev/null | tr '\n' ' '; }

# One check up front: az is logged in and can use the azd environment's subscription. Fails in seconds
# with az's own message instead of timing out in a poll loop.
check_az_subscription() {
    if ! az account show --subscription "$sub" --query id --output tsv >/dev/null 2>"$scratch/err"; then
        fail "az cannot use subscription $sub (AZURE_SUBSCRIPTION_ID of this azd environment): $(last_error)
  az and azd keep separate logins. Fix: 'az login' with an account that can see this subscription
  (add --tenant <tenant id> if it belongs to another tenant), check with
  'az account show --subscription $sub', then run 'azd hooks run $HOOK'."
    fi
}

# The blobs_extension system key appears once the host has started with the new code and indexed the
# Event Grid blob trigger. $1: tries. Sets `key`, empty when it is still missing. Runs in this shell, not
# in a $(...) subshell, so an interrupt stops the loop at once.
wait_for_key() {
    tries=$1
    key=""
    attempt=1
    while :; do
        if key=$(az functionapp keys list --subscription "$sub" --resource-group "$rg" --name "$app" \
            --query "systemKeys.blobs_extension" --output tsv 2>"$scratch/err"); then
            if [ -n "$key" ]; then
                case "$key" in
                    *[!A-Za-z0-9_=-]*) fail "the blobs_extension key has an unexpected format" ;;
                esac
                return 0
            fi
        else
            key=""
            # Retrying cannot mend a missing app or missing rights: say so now, with az's message.
            case "$(last_error)" in
                *AuthorizationFailed* | *ResourceNotFound* | *ResourceGroupNotFound* | *"az login"*)
                    fail "az functionapp keys list failed: $(last_error)" ;;
            esac
        fi
        [ "$attempt" -lt "$tries" ] || return 0
        attempt=$((attempt + 1))
        sleep "$KEY_INTERVAL"
    done
}

# GET the Event Grid subscription's provisioning state into `state`; "absent" when it does not exist.
read_subscription_state() {
    if ! state=$(az rest --method get --url "$subscription_url" --query properties.provisioningState \
        --output tsv 2>"$scratch/err"); then
        case "$(last_error)" in
            *NotFound*) state=absent ;;
            *) fail "could not read the Event Grid subscription: $(last_error)" ;;
        esac
    fi
}

# Create or update the subscription (a PUT: running it again changes nothing), then wait until Event
# Grid has validated the webhook, with the blobs_extension key in `key`. The state is read from the PUT's own
# answer first, so a re-created webhook is never taken as ready on the strength of an older state.
put_subscription() {
    # The body goes through a private file, so the key never appears on a command line and no shell has
    # to quote the '&' in the URL. No filter on the API name: every API that completes a blob
    # (PutBlob, PutBlockList, CopyBlob, FlushWithClose, SFTP uploads, ...) must reach ingest_csv; the
    # pipeline itself sends names that do not end in .csv to the failed container.
    cat >"$scratch/body.json" <<EOF
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
      "subjectBeginsWith": "/blobServices/default/containers/${BOBO_INCOMING_CONTAINER_NAME}/blobs/"
    },
    "eventDeliverySchema": "EventGridSchema",
    "retryPolicy": {
      "maxDeliveryAttempts": 30,
      "eventTimeToLiveInMinutes": 1440
    }
  }
}
EOF
    say "writing Event Grid subscription ${SUBSCRIPTION_NAME} (BlobCreated in ${BOBO_INCOMING_CONTAINER_NAME} -> ingest_csv)..."
    state=$(az rest --method put --url "$subscription_url" --body "@$scratch/body.json" \
        --query properties.provisioningState --output tsv 2>"$scratch/err") \
        || fail "az rest could not write the Event Grid subscription: $(last_error)"
    rm -f "$scratch/body.json"
    attempt=1
    while :; do
        case "$state" in
            Succeeded)
                say "Event Grid subscription ready."
                return 0
                ;;
            Creating | Updating) ;;
            *) fail "the Event Grid subscription is '${state:-unknown}' (webhook validation failed?). Check that ingest_csv is listed with 'az functionapp function list --subscription $sub -g $rg -n $app', then run 'azd hooks run $HOOK'." ;;
        esac
        [ "$attempt" -lt "$STATE_TRIES" ] \
            || fail "the Event Grid subscription is still '$state' after $STATE_TRIES checks; run 'azd hooks run $HOOK' again later"
        attempt=$((attempt + 1))
        sleep "$STATE_INTERVAL"
        read_subscription_state
    done
}

# Status of the Key Vault reference in app setting $1 (Resolved, AccessToKeyVaultDenied, SecretNotFound...).
reference_status() {
    az rest --method get \
        --url "${rg_url}/providers/Microsoft.Web/sites/${app}/config/configreferences/appsettings/$1?api-version=${WEB_API_VERSION}" \
        --query properties.status --output tsv 2>"$scratch/err" || printf 'unknown'
}

# References are resolved when the app settings are written; on a first deployment the app's Key Vault
# role may not have propagated by then, and a failed reference is retried only on restart or after up
# to 24 hours. When azd supplied the secrets, restart and check until both references resolve.
verify_key_vault_references() {
    if [ -z "${ATHOC_CLIENT_SECRET:-}" ] && [ -z "${ATHOC_PASSWORD:-}" ]; then
        remind_missing_secrets
        return 0
    fi
    attempt=1
    while :; do
        say "restarting ${app} so the Key Vault references resolve (try $attempt of $KV_TRIES)..."
        az functionapp restart --subscription "$sub" --resource-group "$rg" --name "$app" --output none 2>"$scratch/err" \
            || fail "az functionapp restart failed: $(last_error)"
        sleep "$KV_INTERVAL"
        secret_status=$(reference_status ATHOC_CLIENT_SECRET)
        password_status=$(reference_status ATHOC_PASSWORD)
        if [ "$secret_status" = Resolved ] && [ "$password_status" = Resolved ]; then
            say "Key Vault references resolved (ATHOC_CLIENT_SECRET, ATHOC_PASSWORD)."
            return 0
        fi
        [ "$attempt" -lt "$KV_TRIES" ] || break
        attempt=$((attempt + 1))
    done
    fail "Key Vault references not resolved: ATHOC_CLIENT_SECRET is '$secret_status', ATHOC_PASSWORD is '$password_status'.
  Check the secrets exist in $AZURE_KEY_VAULT_NAME and the app's identity has Key Vault Secrets User there
  (role assignments can take minutes to apply), then run 'azd hooks run $HOOK'."
}

# Remind, never fail: the AtHoc secrets must be in Key Vault (names only are listed, never values).
remind_missing_secrets() {
    present=$(az keyvault secret list --subscription "$sub" --vault-name "$AZURE_KEY_VAULT_NAME" \
        --query "[].name" --output tsv 2>/dev/null || echo "?")
    for secret in "$ATHOC_CLIENT_SECRET_KV_NAME" "$ATHOC_PASSWORD_KV_NAME"; do
        if ! printf '%s\n' "$present" | grep -qx "$secret"; then
            say "note: Key Vault secret '$secret' is missing (or you cannot list secrets)."
            echo "  Set it without writing it to a file or your shell history (docs/deployment.md, AtHoc secrets):"
            echo "  read -rs value && az keyvault secret set --subscription $sub --vault-name $AZURE_KEY_VAULT_NAME --name $secret --value \"\$value\" --output none; unset value"
            echo "  then: az functionapp restart --subscription $sub -g $rg -n $app"
        fi
    done
}
