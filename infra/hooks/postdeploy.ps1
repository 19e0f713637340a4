# azd postdeploy hook (Windows, PowerShell 7): deliver BlobCreated events of the incoming container to ingest_csv.
#
# Why a hook and not Bicep: the webhook URL carries the blob extension's system key (blobs_extension),
# which exists only after the code is deployed and the Functions host has indexed the Event Grid blob
# trigger. Safe to run again (a PUT creates or updates the subscription): `azd hooks run postdeploy`.
# postprovision.ps1 keeps the same subscription in step with the settings on `azd provision`.
$Hook = 'postdeploy'
. (Join-Path $PSScriptRoot 'common.ps1')
try {
    Test-AzSubscription
    # A request wakes a scaled-to-zero app so the host starts and creates its keys; any answer will do.
    try { Invoke-WebRequest -Uri "https://$appHost/api/health" -TimeoutSec 60 -SkipHttpErrorCheck | Out-Null } catch { }
    Say "waiting for the blobs_extension key of $app..."
    $key = Wait-BlobsExtensionKey $KeyTries
    if (-not $key) {
        Fail "no blobs_extension key after $KeyTries tries (last az message: $(Get-LastError)). Check that ingest_csv is listed with 'az functionapp function list --subscription $sub -g $rg -n $app' (0 functions means the app failed to index), then run 'azd hooks run postdeploy'."
    }
    Set-EventSubscription $key
}
finally {
    Remove-Item -LiteralPath $ErrFile.FullName -Force -ErrorAction SilentlyContinue
}
