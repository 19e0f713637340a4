"""The uploader's pure parts: settings, redaction, the journal, settled files and the archive move."""

from __future__ import annotations

import hashlib
import json
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shared.uploader.config import Auth, UploaderSettings, UploaderSettingsError
from shared.uploader.folder import FileBusy, archive, pass_lock, read_settled, scan
from shared.uploader.journal import KEEP, Confirmation, Journal
from shared.uploader.redaction import Redactor

SAS = "sv=2024-08-04&se=2030-01-01T00%3A00%3A00Z&sr=c&sp=rwc&sig=Zm9vYmFyU2VjcmV0U2lnbmF0dXJl%2B%3D"
ACCOUNT_URL = "https://acct.blob.core.windows.net"


def test_a_sas_url_is_a_destination_whose_token_is_secret_and_never_shown() -> None:
    settings = UploaderSettings.from_env({"BOBO_UPLOAD_URL": f"{ACCOUNT_URL}/bobo-incoming?{SAS}"})
    destination = settings.destination
    assert (destination.auth, destination.container) == (Auth.SAS, "bobo-incoming")
    assert "sig=" not in destination.shown and "Zm9v" not in repr(destination)
    assert SAS in destination.secrets
    assert (settings.settle_seconds, settings.interval_seconds) == (5.0, 10.0)  # contract defaults


def test_a_url_without_sas_uses_entra_id_and_an_emulator_url_names_its_account_first() -> None:
    entra = UploaderSettings.from_env({"BOBO_UPLOAD_URL": f"{ACCOUNT_URL}/bobo-incoming/"}).destination
    assert (entra.auth, entra.container, entra.container_url) == (
        Auth.ENTRA_ID,
        "bobo-incoming",
        f"{ACCOUNT_URL}/bobo-incoming",
    )
    local = UploaderSettings.from_env({"BOBO_UPLOAD_URL": "http://127.0.0.1:10000/devstoreaccount1/in-x?" + SAS})
    assert local.destination.container == "in-x"


def test_bobo_storage_is_the_fallback_with_the_incoming_container_setting() -> None:
    key_string = "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=c2VjcmV0a2V5PT0=;EndpointSuffix=x"
    by_key = UploaderSettings.from_env({"BOBO_STORAGE": key_string, "BOBO_INCOMING_CONTAINER": "in-1"}).destination
    assert (by_key.auth, by_key.container) == (Auth.CONNECTION_STRING, "in-1")
    assert "c2VjcmV0a2V5PT0=" in by_key.secrets and "c2VjcmV0" not in by_key.shown
    identity = UploaderSettings.from_env(
        {"BOBO_STORAGE__blobServiceUri": ACCOUNT_URL + "/", "BOBO_STORAGE__clientId": "cid"}
    ).destination
    assert (identity.auth, identity.account_url, identity.container, identity.client_id) == (
        Auth.ENTRA_ID,
        ACCOUNT_URL,
        "bobo-incoming",
        "cid",
    )


def test_every_bad_setting_is_named_at_once_and_no_secret_is_echoed() -> None:
    with pytest.raises(UploaderSettingsError) as raised:
        UploaderSettings.from_env(
            {
                "BOBO_UPLOAD_URL": f"http://storage.example.com/in?{SAS}",
                "BOBO_UPLOAD_SETTLE_SECONDS": "soon",
                "BOBO_UPLOAD_INTERVAL_SECONDS": "0",
                "LOG_LEVEL": "chatty",
            }
        )
    message = str(raised.value)
    for name in ("BOBO_UPLOAD_URL", "BOBO_UPLOAD_SETTLE_SECONDS", "BOBO_UPLOAD_INTERVAL_SECONDS", "LOG_LEVEL"):
        assert name in message
    assert "sig" not in message and "Zm9v" not in message
    with pytest.raises(UploaderSettingsError, match="BOBO_UPLOAD_URL is required"):
        UploaderSettings.from_env({})
    with pytest.raises(UploaderSettingsError, match="not a container URL"):
        UploaderSettings.from_env({"BOBO_UPLOAD_URL": f"{ACCOUNT_URL}/"})
    with pytest.raises(UploaderSettingsError, match="no SAS signature"):
        UploaderSettings.from_env({"BOBO_UPLOAD_URL": f"{ACCOUNT_URL}/in-x?sv=2024-08-04"})


def test_redaction_removes_known_secrets_and_any_signature_or_key() -> None:
    redact = Redactor([SAS])
    urllib3_text = f"Max retries exceeded with url: /devstoreaccount1/in/a.csv?{SAS} (Caused by ...)"
    assert "Zm9v" not in redact(urllib3_text) and "REDACTED" in redact(urllib3_text)
    stranger = Redactor()  # values it was never told about
    text = "url?sv=1&sig=abc%2Bdef&se=2 conn AccountKey=k3y==;EndpointSuffix=x q=sig%3Dzzz"
    assert stranger(text) == "url?sv=1&sig=REDACTED&se=2 conn AccountKey=REDACTED;EndpointSuffix=x q=sig%3DREDACTED"


def _entry(name: str, confirmed_at: datetime, md5: str = "ab" * 16) -> Confirmation:
    return Confirmation(name, 10, md5, name, "uploaded", confirmed_at.isoformat(timespec="seconds"))


def test_the_journal_survives_a_torn_last_line_and_compacts_what_left_the_folder_long_ago(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    now = datetime(2026, 1, 10, tzinfo=UTC)
    journal = Journal(path)
    for entry in (
        _entry("old-gone.csv", now - KEEP - timedelta(hours=1)),
        _entry("old-still-here.csv", now - KEEP - timedelta(hours=1)),
        _entry("new.csv", now),
    ):
        journal.confirm(entry)
    with path.open("a", encoding="utf-8") as out:
        out.write('{"name": "torn.csv", "si')  # a crash in the middle of a write

    reloaded = Journal(path)
    assert len(reloaded) == 3 and reloaded.find("new.csv", 10, "ab" * 16) is not None
    assert reloaded.find("new.csv", 10, "cd" * 16) is None  # other content is another file
    assert reloaded.compact({"old-still-here.csv"}, now) == 1
    kept = [json.loads(line)["name"] for line in path.read_text(encoding="utf-8").splitlines()]
    assert kept == ["old-still-here.csv", "new.csv"]  # the torn line is gone too


def _write(path: Path, text: str, age_seconds: float) -> Path:
    path.write_text(text, encoding="utf-8")
    stamp = time.time() - age_seconds
    os.utime(path, (stamp, stamp))
    return path


def test_scan_takes_csv_in_any_case_directly_in_the_folder_oldest_first(tmp_path: Path) -> None:
    _write(tmp_path / "b.CSV", "b", 60)
    _write(tmp_path / "a.csv", "a", 30)
    _write(tmp_path / "fresh.csv", "f", 1)
    _write(tmp_path / "future.csv", "x", -3600)  # clock skew: not settled until its time has passed
    _write(tmp_path / "notes.txt", "n", 60)
    (tmp_path / "uploaded").mkdir()
    _write(tmp_path / "uploaded" / "old.csv", "o", 60)

    settled, unsettled = scan(tmp_path, settle_seconds=5)

    assert [f.name for f in settled] == ["b.CSV", "a.csv"]
    assert sorted(f.name for f in unsettled) == ["fresh.csv", "future.csv"]


def test_a_file_that_changed_since_the_scan_is_busy_not_read(tmp_path: Path) -> None:
    path = _write(tmp_path / "a.csv", "BON,1\n", 60)
    (seen,) = scan(tmp_path, settle_seconds=5)[0]
    content = read_settled(seen)
    assert (content.data, content.md5) == (b"BON,1\n", hashlib.md5(b"BON,1\n", usedforsecurity=False).hexdigest())
    with path.open("a", encoding="utf-8") as out:
        out.write("BOF,1\n")
    with pytest.raises(FileBusy):
        read_settled(seen)


def test_archive_never_replaces_a_file_and_suffixes_the_clash(tmp_path: Path) -> None:
    folder, store = tmp_path / "in", tmp_path / "archive"
    folder.mkdir()
    store.mkdir()
    (store / "a.csv").write_text("earlier", encoding="utf-8")
    (folder / "a.csv").write_text("later", encoding="utf-8")
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

    target = archive(folder / "a.csv", store, now)

    assert target.name == "a-20260102T030405Z.csv" and target.read_text(encoding="utf-8") == "later"
    assert (store / "a.csv").read_text(encoding="utf-8") == "earlier"
    assert not (folder / "a.csv").exists()


@pytest.mark.skipif(os.name == "nt", reason="the link-then-unlink move is the POSIX path")
def test_a_move_cut_short_after_its_link_is_finished_not_archived_twice(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("once", encoding="utf-8")
    store = tmp_path / "archive"
    store.mkdir()
    os.link(tmp_path / "a.csv", store / "a.csv")  # the crash came before the unlink

    target = archive(tmp_path / "a.csv", store, datetime(2026, 1, 2, tzinfo=UTC))

    assert target == store / "a.csv" and sorted(p.name for p in store.iterdir()) == ["a.csv"]
    assert not (tmp_path / "a.csv").exists()


def test_one_pass_at_a_time_per_archive_folder(tmp_path: Path) -> None:
    with pass_lock(tmp_path) as first, pass_lock(tmp_path) as second:
        assert (first, second) == (True, False)
    with pass_lock(tmp_path) as again:
        assert again  # released when the holder ends


def test_each_auth_builds_its_client_without_a_request() -> None:
    from azure.identity import DefaultAzureCredential

    from shared.uploader.transfer import container_client

    sas = container_client(UploaderSettings.from_env({"BOBO_UPLOAD_URL": f"{ACCOUNT_URL}/in-x?{SAS}"}).destination)
    assert (sas.container_name, sas.credential) == ("in-x", None)  # the token travels in the URL
    entra = container_client(UploaderSettings.from_env({"BOBO_UPLOAD_URL": f"{ACCOUNT_URL}/in-x"}).destination)
    assert entra.container_name == "in-x" and isinstance(entra.credential, DefaultAzureCredential)
    identity = container_client(UploaderSettings.from_env({"BOBO_STORAGE__blobServiceUri": ACCOUNT_URL}).destination)
    assert identity.url.startswith(f"{ACCOUNT_URL}/bobo-incoming") and isinstance(
        identity.credential, DefaultAzureCredential
    )


def test_sdk_errors_map_to_stop_retry_later_or_skip_the_file() -> None:
    from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ServiceRequestError

    from shared.uploader.transfer import DestinationRefused, FileRefused, TransientFailure, _classified

    def http(status: int) -> HttpResponseError:
        error = HttpResponseError(message=f"status {status}\nmore lines")
        error.status_code = status
        return error

    assert isinstance(_classified(ClientAuthenticationError("no credential")), DestinationRefused)
    assert isinstance(_classified(http(403)), DestinationRefused)
    assert isinstance(_classified(http(400)), FileRefused)
    for transient in (http(503), http(429), http(408), ServiceRequestError("connection refused")):
        assert isinstance(_classified(transient), TransientFailure)
    assert "\n" not in str(_classified(http(500)))  # one line for the report
