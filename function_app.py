"""The Functions app: creates `app` and registers the blueprints, nothing else.

Import-safe by design: no network and no settings validation here (an import error means
"0 functions loaded"); clients are created lazily on the first invocation.
"""

import azure.functions as func

from functions.http import bp as http_blueprint
from functions.ingest import bp as ingest_blueprint
from functions.maintenance import bp as maintenance_blueprint

app = func.FunctionApp()
app.register_functions(ingest_blueprint)
app.register_functions(maintenance_blueprint)
app.register_functions(http_blueprint)
