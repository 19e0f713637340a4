# azd postdeploy hook (Windows, PowerShell 7): deliver BlobCreated events of the incoming container to ingest_csv.
#
# Why a hook and not Bicep: the webhook URL carries the blob extension's system key (blobs_extension),
# which exists only after the code is deployed and the Functions host has indexed the Event Grid blob
# trigger. Safe to run again (a PUT creates or updates the subscription). Run by hand with
# `pwsh infra/hooks/postdeploy.ps1` after `azd env select <env>`.
$ErrorActionPreference = 'Stop'

$SubscriptionName = 'bobo-incoming-to-ingest-csv'
$EventGridApiVersion = '2025-02-15'

function Fail([string] $Message) {
    Write-Error "postdeploy: error: $Message" -ErrorAction Continue
    exit 1
}

if (-not (Get-Command az -ErrorAction SilentlyContinue)) {
    Fail 'the Azure CLI (az) is required; see README.md, Deployment > Prerequisites'
}

# azd passes its environment values to hooks; load them when the script is run by hand.
if (-not $env:AZURE_FUNCTION_APP_NAME -and (Get-Command azd -ErrorAction SilentlyContinue)) {
    foreach ($line in (& azd env get-values)) {
        if ($line -match '^([^=]+)=(.*)$') {
            Set-Item -Path "Env:$($Matches[1])" -Value ($Matches[2] -replace '^"|"$', '')
        }
    }
}

$required = 'AZURE_RESOURCE_GROUP', 'AZURE_FUNCTION_APP_NAME', 'AZURE_FUNCTION_APP_HOSTNAME',
    'BOBO_EVENTGRID_SYSTEM_TOPIC_NAME', 'BOBO_INCOMING_CONTAINER_NAME', 'AZURE_KEY_VAULT_NAME',
    'ATHOC_CLIENT_SECRET_KV_NAME', 'ATHOC_PASSWORD_KV_NAME'
foreach ($name in $required) {
    if (-not [Environment]::GetEnvironmentVariable($name)) {
        Fail "$name is not set: run 'azd provision' first (it comes from infra/main.bicep outputs)"
    }
}

$rg = $env:AZURE_RESOURCE_GROUP
$app = $env:AZURE_FUNCTION_APP_NAME
$topic = $env:BOBO_EVENTGRID_SYSTEM_TOPIC_NAME
$appHost = $env:AZURE_FUNCTION_APP_HOSTNAME
$container = $env:BOBO_INCOMING_CONTAINER_NAME

# 1. The blobs_extension key appears once the host has started with the new code. A request wakes a
#    scaled-to-zero app; any answer will do.
try { Invoke-WebRequest -Uri "https://$appHost/api/health" -TimeoutSec 60 -SkipHttpErrorCheck | Out-Null } catch { }
Write-Host "postdeploy: waiting for the blobs_extension key of $app..."
$key = ''
for ($attempt = 1; $attempt -le 24; $attempt++) {
    $key = (az functionapp keys list --resource-group $rg --name $app --query 'systemKeys.blobs_extension' --output tsv 2>$null)
    if ($LASTEXITCODE -eq 0 -and $key) { break }
    Start-Sleep -Seconds 15
}
if (-not $key) {
    Fail "no blobs_extension key after 6 minutes. Check that ingest_csv is listed with 'az functionapp function list -g $rg -n $app' (0 functions means the app failed to index), then run this script again."
}
if ($key -notmatch '^[A-Za-z0-9_=-]+$') { Fail 'the blobs_extension key has an unexpected format' }

# 2. Create or update the subscription. The body goes through a private temporary file, so the key never
#    appears on a command line and cmd.exe (behind az.cmd) never sees the '&' in the URL.
$body = @{
    properties = @{
        destination         = @{
            endpointType = 'WebHook'
            properties   = @{
                endpointUrl                   = "https://$appHost/runtime/webhooks/blobs?functionName=Host.Functions.ingest_csv&code=$key"
                maxEventsPerBatch             = 1
                preferredBatchSizeInKilobytes = 64
            }
        }
        filter              = @{
            includedEventTypes = @('Microsoft.Storage.BlobCreated')
            subjectBeginsWith  = "/blobServices/default/containers/$container/blobs/"
            advancedFilters    = @(
                @{
                    operatorType = 'StringIn'
                    key          = 'data.api'
                    values       = @('PutBlob', 'PutBlockList', 'CopyBlob', 'FlushWithClose')
                }
            )
        }
        eventDeliverySchema = 'EventGridSchema'
        retryPolicy         = @{
            maxDeliveryAttempts      = 30
            eventTimeToLiveInMinutes = 1440
        }
    }
} | ConvertTo-Json -Depth 10

$bodyFile = New-TemporaryFile
try {
    [System.IO.File]::WriteAllText($bodyFile.FullName, $body, [System.Text.UTF8Encoding]::new($false))

    $topicId = (az eventgrid system-topic show --resource-group $rg --name $topic --query id --output tsv)
    if ($LASTEXITCODE -ne 0 -or -not $topicId) { Fail "system topic $topic not found in $rg" }
    Write-Host "postdeploy: creating Event Grid subscription $SubscriptionName (BlobCreated in $container -> ingest_csv)..."
    az rest --method put `
        --url "$topicId/eventSubscriptions/$($SubscriptionName)?api-version=$EventGridApiVersion" `
        --body "@$($bodyFile.FullName)" --output none
    if ($LASTEXITCODE -ne 0) { Fail 'az rest could not create the Event Grid subscription' }
}
finally {
    Remove-Item -LiteralPath $bodyFile.FullName -Force -ErrorAction SilentlyContinue
}

# 3. Event Grid validates the webhook before the subscription is usable; wait for the outcome.
$state = ''
for ($attempt = 1; $attempt -le 36; $attempt++) {
    $state = (az eventgrid system-topic event-subscription show --resource-group $rg --system-topic-name $topic `
            --name $SubscriptionName --query provisioningState --output tsv 2>$null)
    if ($state -eq 'Succeeded') { break }
    if ($state -in 'Failed', 'Canceled') {
        Fail "the Event Grid subscription is $state (webhook validation failed?). Check that ingest_csv is indexed with the EventGrid source, then run this script again."
    }
    Start-Sleep -Seconds 5
}
if ($state -ne 'Succeeded') { Fail "the Event Grid subscription is still '$state' after 3 minutes" }
Write-Host 'postdeploy: Event Grid subscription ready.'

# 4. Remind, never fail: the AtHoc secrets must be in Key Vault (names only are listed, never values).
$present = @(az keyvault secret list --vault-name $env:AZURE_KEY_VAULT_NAME --query '[].name' --output tsv 2>$null)
foreach ($secret in $env:ATHOC_CLIENT_SECRET_KV_NAME, $env:ATHOC_PASSWORD_KV_NAME) {
    if ($present -notcontains $secret) {
        Write-Host "postdeploy: note: Key Vault secret '$secret' is missing (or you cannot list secrets)."
        # Not az keyvault secret set --value here: az.cmd passes arguments through cmd.exe, which mangles & ^ % in secrets.
        Write-Host "  Set it in the Azure portal (Key Vault $($env:AZURE_KEY_VAULT_NAME) > Secrets > Generate/Import, name '$secret'),"
        Write-Host "  or with Az PowerShell: Set-AzKeyVaultSecret -VaultName $($env:AZURE_KEY_VAULT_NAME) -Name $secret -SecretValue (Read-Host -AsSecureString)"
        Write-Host "  (README.md, Deployment > AtHoc secrets)."
    }
}
