# Shared by the azd hooks postprovision.ps1 and postdeploy.ps1 (Windows, PowerShell 7); dot-sourced.
# The same steps as common.sh; see there for the reasons. Never run by this project's tests: no registry
# it can reach ships pwsh (docs/deployment.md, What is checked where).
#
# Every az call names the azd environment's subscription (az and azd keep separate logins); az rest takes
# its target from the URL alone, so it gets full resource URLs under /subscriptions/$AZURE_SUBSCRIPTION_ID.
$ErrorActionPreference = 'Stop'

$SubscriptionName = 'bobo-incoming-to-ingest-csv'
$EventGridApiVersion = '2025-02-15'
$WebApiVersion = '2024-04-01'
function Get-Tuning([string] $Name, [double] $Default) {
    $value = [Environment]::GetEnvironmentVariable($Name)
    if ($value) { return [double] $value } else { return $Default }
}
$KeyTries = [int] (Get-Tuning 'BOBO_HOOK_KEY_TRIES' 24)
$KeyInterval = Get-Tuning 'BOBO_HOOK_KEY_INTERVAL_SECONDS' 15
$StateTries = [int] (Get-Tuning 'BOBO_HOOK_STATE_TRIES' 36)
$StateInterval = Get-Tuning 'BOBO_HOOK_STATE_INTERVAL_SECONDS' 5
$KvTries = [int] (Get-Tuning 'BOBO_HOOK_KV_TRIES' 6)
$KvInterval = Get-Tuning 'BOBO_HOOK_KV_INTERVAL_SECONDS' 20

function Say([string] $Message) { Write-Host "$($Hook): $Message" }

function Fail([string] $Message) {
    Write-Error "$($Hook): error: $Message" -ErrorAction Continue
    exit 1
}

# az's error output goes to a private file; Ctrl-C ends a PowerShell script by itself (no trap needed).
$ErrFile = New-TemporaryFile
$ErrPath = $ErrFile.FullName
function Get-LastError { (Get-Content -LiteralPath $ErrPath -Tail 3 -ErrorAction SilentlyContinue) -join ' ' }

if (-not (Get-Command az -ErrorAction SilentlyContinue)) {
    Fail 'the Azure CLI (az) is required; see docs/deployment.md, Prerequisites'
}

# azd passes its environment values to hooks; load them when the script is run by hand.
if (-not $env:AZURE_FUNCTION_APP_NAME -and (Get-Command azd -ErrorAction SilentlyContinue)) {
    foreach ($line in (& azd env get-values)) {
        if ($line -match '^([^=]+)=(.*)$') {
            Set-Item -Path "Env:$($Matches[1])" -Value ($Matches[2] -replace '^"|"$', '')
        }
    }
}

$required = 'AZURE_SUBSCRIPTION_ID', 'AZURE_RESOURCE_GROUP', 'AZURE_FUNCTION_APP_NAME', 'AZURE_FUNCTION_APP_HOSTNAME',
    'BOBO_EVENTGRID_SYSTEM_TOPIC_NAME', 'BOBO_INCOMING_CONTAINER_NAME', 'AZURE_KEY_VAULT_NAME',
    'ATHOC_CLIENT_SECRET_KV_NAME', 'ATHOC_PASSWORD_KV_NAME'
foreach ($name in $required) {
    if (-not [Environment]::GetEnvironmentVariable($name)) {
        Fail "$name is not set: run 'azd provision' first (it comes from azd or from infra/main.bicep outputs), or select the environment with 'azd env select'"
    }
}

$sub = $env:AZURE_SUBSCRIPTION_ID
$rg = $env:AZURE_RESOURCE_GROUP
$app = $env:AZURE_FUNCTION_APP_NAME
$appHost = $env:AZURE_FUNCTION_APP_HOSTNAME
$container = $env:BOBO_INCOMING_CONTAINER_NAME
$rgUrl = "/subscriptions/$sub/resourceGroups/$rg"
$subscriptionUrl = "$rgUrl/providers/Microsoft.EventGrid/systemTopics/$($env:BOBO_EVENTGRID_SYSTEM_TOPIC_NAME)/eventSubscriptions/$($SubscriptionName)?api-version=$EventGridApiVersion"

function Test-AzSubscription {
    az account show --subscription $sub --query id --output tsv 2>$ErrPath | Out-Null
    if ($LASTEXITCODE -ne 0) {
        Fail ("az cannot use subscription $sub (AZURE_SUBSCRIPTION_ID of this azd environment): $(Get-LastError)`n" +
            "  az and azd keep separate logins. Fix: 'az login' with an account that can see this subscription`n" +
            "  (add --tenant <tenant id> if it belongs to another tenant), check with`n" +
            "  'az account show --subscription $sub', then run 'azd hooks run $Hook'.")
    }
}

function Wait-BlobsExtensionKey([int] $Tries) {
    for ($attempt = 1; $attempt -le $Tries; $attempt++) {
        $found = (az functionapp keys list --subscription $sub --resource-group $rg --name $app `
                --query 'systemKeys.blobs_extension' --output tsv 2>$ErrPath)
        if ($LASTEXITCODE -eq 0 -and $found) {
            if ($found -notmatch '^[A-Za-z0-9_=-]+$') { Fail 'the blobs_extension key has an unexpected format' }
            return $found
        }
        if ($LASTEXITCODE -ne 0 -and (Get-LastError) -match 'AuthorizationFailed|ResourceNotFound|ResourceGroupNotFound|az login') {
            Fail "az functionapp keys list failed: $(Get-LastError)"
        }
        if ($attempt -lt $Tries) { Start-Sleep -Seconds $KeyInterval }
    }
    return ''
}

function Get-SubscriptionState {
    $state = (az rest --method get --url $subscriptionUrl --query properties.provisioningState --output tsv 2>$ErrPath)
    if ($LASTEXITCODE -eq 0) { return $state }
    if ((Get-LastError) -match 'NotFound') { return 'absent' }
    Fail "could not read the Event Grid subscription: $(Get-LastError)"
}

# Create or update the subscription (PUT), then wait while the PUT's own answer, and later GETs, say
# Creating or Updating. No filter on the API name: every API that completes a blob must reach ingest_csv.
function Set-EventSubscription([string] $Key) {
    $body = @{
        properties = @{
            destination         = @{
                endpointType = 'WebHook'
                properties   = @{
                    endpointUrl                   = "https://$appHost/runtime/webhooks/blobs?functionName=Host.Functions.ingest_csv&code=$Key"
                    maxEventsPerBatch             = 1
                    preferredBatchSizeInKilobytes = 64
                }
            }
            filter              = @{
                includedEventTypes = @('Microsoft.Storage.BlobCreated')
                subjectBeginsWith  = "/blobServices/default/containers/$container/blobs/"
            }
            eventDeliverySchema = 'EventGridSchema'
            retryPolicy         = @{
                maxDeliveryAttempts      = 30
                eventTimeToLiveInMinutes = 1440
            }
        }
    } | ConvertTo-Json -Depth 10
    # A private file: the key never appears on a command line and cmd.exe (behind az.cmd) never sees the '&'.
    $bodyFile = New-TemporaryFile
    try {
        [System.IO.File]::WriteAllText($bodyFile.FullName, $body, [System.Text.UTF8Encoding]::new($false))
        Say "writing Event Grid subscription $SubscriptionName (BlobCreated in $container -> ingest_csv)..."
        $state = (az rest --method put --url $subscriptionUrl --body "@$($bodyFile.FullName)" `
                --query properties.provisioningState --output tsv 2>$ErrPath)
        if ($LASTEXITCODE -ne 0) { Fail "az rest could not write the Event Grid subscription: $(Get-LastError)" }
    }
    finally {
        Remove-Item -LiteralPath $bodyFile.FullName -Force -ErrorAction SilentlyContinue
    }
    for ($attempt = 1; ; $attempt++) {
        if ($state -eq 'Succeeded') { Say 'Event Grid subscription ready.'; return }
        if ($state -notin 'Creating', 'Updating') {
            Fail "the Event Grid subscription is '$state' (webhook validation failed?). Check that ingest_csv is listed with 'az functionapp function list --subscription $sub -g $rg -n $app', then run 'azd hooks run $Hook'."
        }
        if ($attempt -ge $StateTries) {
            Fail "the Event Grid subscription is still '$state' after $StateTries checks; run 'azd hooks run $Hook' again later"
        }
        Start-Sleep -Seconds $StateInterval
        $state = Get-SubscriptionState
    }
}

function Get-ReferenceStatus([string] $Setting) {
    $status = (az rest --method get `
            --url "$rgUrl/providers/Microsoft.Web/sites/$app/config/configreferences/appsettings/$($Setting)?api-version=$WebApiVersion" `
            --query properties.status --output tsv 2>$ErrPath)
    if ($LASTEXITCODE -eq 0 -and $status) { return $status } else { return 'unknown' }
}

# When azd supplied the secrets: restart until both Key Vault references resolve (see common.sh).
function Confirm-KeyVaultReferences {
    if (-not $env:ATHOC_CLIENT_SECRET -and -not $env:ATHOC_PASSWORD) { Show-MissingSecrets; return }
    for ($attempt = 1; $attempt -le $KvTries; $attempt++) {
        Say "restarting $app so the Key Vault references resolve (try $attempt of $KvTries)..."
        az functionapp restart --subscription $sub --resource-group $rg --name $app --output none 2>$ErrPath
        if ($LASTEXITCODE -ne 0) { Fail "az functionapp restart failed: $(Get-LastError)" }
        Start-Sleep -Seconds $KvInterval
        $secretStatus = Get-ReferenceStatus 'ATHOC_CLIENT_SECRET'
        $passwordStatus = Get-ReferenceStatus 'ATHOC_PASSWORD'
        if ($secretStatus -eq 'Resolved' -and $passwordStatus -eq 'Resolved') {
            Say 'Key Vault references resolved (ATHOC_CLIENT_SECRET, ATHOC_PASSWORD).'
            return
        }
    }
    Fail ("Key Vault references not resolved: ATHOC_CLIENT_SECRET is '$secretStatus', ATHOC_PASSWORD is '$passwordStatus'.`n" +
        "  Check the secrets exist in $($env:AZURE_KEY_VAULT_NAME) and the app's identity has Key Vault Secrets User there`n" +
        "  (role assignments can take minutes to apply), then run 'azd hooks run $Hook'.")
}

# Remind, never fail: the AtHoc secrets must be in Key Vault (names only are listed, never values).
function Show-MissingSecrets {
    $present = @(az keyvault secret list --subscription $sub --vault-name $env:AZURE_KEY_VAULT_NAME --query '[].name' --output tsv 2>$null)
    foreach ($secret in $env:ATHOC_CLIENT_SECRET_KV_NAME, $env:ATHOC_PASSWORD_KV_NAME) {
        if ($present -notcontains $secret) {
            Say "note: Key Vault secret '$secret' is missing (or you cannot list secrets)."
            # Not az keyvault secret set --value here: az.cmd passes arguments through cmd.exe, which mangles & ^ % in secrets.
            Write-Host "  Set it in the Azure portal (Key Vault $($env:AZURE_KEY_VAULT_NAME) > Secrets > Generate/Import, name '$secret'),"
            Write-Host "  or with Az PowerShell: Set-AzKeyVaultSecret -VaultName $($env:AZURE_KEY_VAULT_NAME) -Name $secret -SecretValue (Read-Host -AsSecureString)"
            Write-Host "  then: az functionapp restart --subscription $sub -g $rg -n $app (docs/deployment.md, AtHoc secrets)."
        }
    }
}
