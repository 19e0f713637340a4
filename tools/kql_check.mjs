// Parses and binds KQL queries against the Application Insights schema with Kusto's own language service
// (@kusto/language-service-next, the parser and binder behind the Azure portal's query editor).
//
//   node tools/kql_check.mjs < queries.json      # [{"name": "...", "query": "..."}, ...]
//
// Prints one JSON line: [{"name", "errors": [{"message", "code", "start", "length"}]}]; the exit code is 0
// whether or not a query has errors (tests/unit/test_kql.py judges), 2 when the input cannot be read.
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";

const require = createRequire(import.meta.url);
require("@kusto/language-service-next/bridge.min.js");
require("@kusto/language-service-next/Kusto.Language.Bridge.min.js");
const { Kusto } = globalThis;
const Symbols = Kusto.Language.Symbols;

// The Application Insights tables the repository's queries read, with their columns (as the portal has them).
const COMMON = [
  "timestamp:datetime", "itemType:string", "customDimensions:dynamic", "operation_Name:string",
  "operation_Id:string", "operation_ParentId:string", "operation_SyntheticSource:string", "session_Id:string",
  "user_Id:string", "user_AuthenticatedId:string", "user_AccountId:string", "application_Version:string",
  "client_Type:string", "client_Model:string", "client_OS:string", "client_IP:string", "client_City:string",
  "client_StateOrProvince:string", "client_CountryOrRegion:string", "client_Browser:string",
  "cloud_RoleName:string", "cloud_RoleInstance:string", "appId:string", "appName:string", "iKey:string",
  "sdkVersion:string", "itemId:string", "itemCount:int",
];
const TABLES = {
  traces: ["message:string", "severityLevel:int", "customMeasurements:dynamic"],
  requests: [
    "id:string", "source:string", "name:string", "url:string", "success:bool", "resultCode:string",
    "duration:real", "performanceBucket:string", "customMeasurements:dynamic",
  ],
  dependencies: [
    "id:string", "target:string", "type:string", "name:string", "data:string", "success:bool",
    "resultCode:string", "duration:real", "performanceBucket:string", "customMeasurements:dynamic",
  ],
  exceptions: [
    "problemId:string", "handledAt:string", "type:string", "message:string", "assembly:string",
    "method:string", "outerType:string", "outerMessage:string", "outerAssembly:string", "outerMethod:string",
    "innermostType:string", "innermostMessage:string", "innermostAssembly:string", "innermostMethod:string",
    "severityLevel:int", "details:dynamic", "customMeasurements:dynamic",
  ],
  customMetrics: [
    "name:string", "value:real", "valueCount:int", "valueSum:real", "valueMin:real", "valueMax:real",
    "valueStdDev:real",
  ],
};

function globals() {
  const tables = Object.entries(TABLES).map(([name, columns]) =>
    Symbols.TableSymbol.From(`(${[...columns, ...COMMON].join(", ")})`).WithName(name),
  );
  const database = new Symbols.DatabaseSymbol.$ctor1("ApplicationInsights", tables, false);
  return Kusto.Language.GlobalState.Default.WithDatabase(database);
}

function check(state, query) {
  const code = Kusto.Language.KustoCode.ParseAndAnalyze(query, state);
  const diagnostics = code.GetDiagnostics();
  const errors = [];
  for (let i = 0; i < diagnostics.Count; i++) {
    const d = diagnostics.getItem(i);
    if (d.Severity === "Error") errors.push({ message: d.Message, code: d.Code, start: d.Start, length: d.Length });
  }
  return errors;
}

let input;
try {
  input = JSON.parse(readFileSync(0, "utf8"));
} catch (error) {
  console.error(`kql_check: no JSON list of queries on stdin (${error.message})`);
  process.exit(2);
}
const state = globals();
console.log(JSON.stringify(input.map(({ name, query }) => ({ name, errors: check(state, query) }))));
