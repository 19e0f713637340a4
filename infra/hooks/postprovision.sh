#!/bin/sh
# azd postprovision hook (macOS, Linux): after the app settings and secrets are written,
#   1. when azd supplied the AtHoc secrets, restart the app and check both Key Vault references resolve
#      (otherwise remind which secrets are still missing);
#   2. keep the Event Grid subscription in step with the settings: a renamed incoming container (a new
#      BOBO_INCOMING_CONTAINER_NAME output) must move its subject filter too. On the first `azd up` the
#      code is not deployed yet (no key, no subscription): postdeploy.sh creates the subscription.
# Safe to run again: `azd hooks run postprovision`.
HOOK=postprovision
hooks_dir=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
# shellcheck source=infra/hooks/common.sh
. "$hooks_dir/common.sh"

check_az_subscription
verify_key_vault_references

read_subscription_state
if [ "$state" = absent ]; then
    # Code deployed before without a subscription (say, a failed postdeploy): the key is there at once.
    wait_for_key 1
    if [ -z "$key" ]; then
        say "no Event Grid subscription yet and no code deployed: postdeploy creates it after 'azd deploy'."
        exit 0
    fi
else
    say "waiting for the blobs_extension key of ${app} (the settings change restarts the host)..."
    wait_for_key "$KEY_TRIES"
    [ -n "$key" ] || fail "no blobs_extension key after $KEY_TRIES tries (last az message: $(last_error)); the Event Grid subscription may still filter the old container. Run 'azd hooks run postprovision' once the app is up."
fi
put_subscription
