# azd postprovision hook (Windows, PowerShell 7): after the app settings and secrets are written,
#   1. when azd supplied the AtHoc secrets, restart the app and check both Key Vault references resolve
#      (otherwise remind which secrets are still missing);
#   2. keep the Event Grid subscription in step with the settings (a new BOBO_INCOMING_CONTAINER_NAME).
#      On the first `azd up` the code is not deployed yet: postdeploy.ps1 creates the subscription.
# Safe to run again: `azd hooks run postprovision`.
$Hook = 'postprovision'
. (Join-Path $PSScriptRoot 'common.ps1')
try {
    Test-AzSubscription
    Confirm-KeyVaultReferences
    if ((Get-SubscriptionState) -eq 'absent') {
        $key = Wait-BlobsExtensionKey 1
        if (-not $key) {
            Say "no Event Grid subscription yet and no code deployed: postdeploy creates it after 'azd deploy'."
            exit 0
        }
    }
    else {
        Say "waiting for the blobs_extension key of $app (the settings change restarts the host)..."
        $key = Wait-BlobsExtensionKey $KeyTries
        if (-not $key) {
            Fail "no blobs_extension key after $KeyTries tries (last az message: $(Get-LastError)); the Event Grid subscription may still filter the old container. Run 'azd hooks run postprovision' once the app is up."
        }
    }
    Set-EventSubscription $key
}
finally {
    Remove-Item -LiteralPath $ErrFile.FullName -Force -ErrorAction SilentlyContinue
}
