"""The exporter's side (docs/uploader.md): BOBO's exports from a local folder into incoming, exactly once.

Runs on the BOBO server, not in the function app: it imports azure-storage-blob and azure-identity only,
never the Functions stack, Table Storage or the AtHoc client. Modules: `config` (settings), `folder`
(settled files, archive, pass lock), `journal` (confirmed uploads), `transfer` (the Azure side),
`passes` (one pass), `cli` (the command), `redaction` (no secret in any output).
"""
