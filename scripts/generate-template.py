#!/usr/bin/env python3
"""Writes what repeats per endpoint from endpoints.toml, between `BEGIN generated:` and
`END generated:` markers: in template.yaml each function (routes, memory, build method,
DynamoDB policy), its log group and alarms, and the table's alarms; in Cargo.toml the
`cargo lambda watch` router (make run).

The alarms were `Fn::ForEach` loops, which `sam build` cannot read (aws/aws-sam-cli#5647,
#6903): this writes explicit resources instead. Run it after changing endpoints.toml:
make template (with --check it exits 1 if a file is not what it would write; a test runs it).
"""
import pathlib
import re
import sys
import tomllib

ROOT = pathlib.Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"
CARGO_TOML = ROOT / "Cargo.toml"
API_BASE_PATH = "/api/developer/"


def endpoints():
    """endpoints.toml's endpoints, in order."""
    table = tomllib.loads((ROOT / "endpoints.toml").read_text())["endpoint"]
    for endpoint in table:
        # lambda/Makefile finds the binary from the logical id: UsersUpsert -> users-upsert.
        kebab = re.sub(r"([a-z0-9])([A-Z])", r"\1-\2", endpoint["name"]).lower()
        if kebab != endpoint["function"]:
            sys.exit(f"endpoints.toml: {endpoint['name']} must be the function {kebab}, not {endpoint['function']}")
        if endpoint.get("writes") and not endpoint.get("write_keys"):
            sys.exit(f"endpoints.toml: {endpoint['name']} writes, so it needs write_keys (dynamodb:LeadingKeys)")
    return table


# Every DynamoDB operation the functions' policies allow (a test keeps the two equal).
TABLE_OPERATIONS = ["GetItem", "BatchGetItem", "Query", "PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem"]
TABLE_METRICS = ["ThrottledRequests", "SystemErrors"]

NOTIFY = """\
      AlarmActions: !If [HasAlarmTopic, [!Ref AlarmTopicArn], !Ref AWS::NoValue]
      OKActions: !If [HasAlarmTopic, [!Ref AlarmTopicArn], !Ref AWS::NoValue]
"""

# Fires on any one occurrence in a minute.
ANY_IN_A_MINUTE = f"""\
      Statistic: Sum
      Period: 60
      EvaluationPeriods: 1
      Threshold: 0
      ComparisonOperator: GreaterThanThreshold
      TreatMissingData: notBreaching
{NOTIFY}"""

# p99 over 5 minutes above 8 s, 80 percent of the 10 s timeout (template Globals).
P99_NEAR_THE_TIMEOUT = f"""\
      ExtendedStatistic: p99
      Unit: Milliseconds
      Period: 300
      EvaluationPeriods: 1
      Threshold: 8000
      ComparisonOperator: GreaterThanThreshold
      TreatMissingData: notBreaching
{NOTIFY}"""


def lambda_alarm(name, metric, description, statistic, dimensions=""):
    """<name><metric>Alarm on the AWS/Lambda metric of the <name>Function."""
    return f"""\
  {name}{metric}Alarm:
    Type: AWS::CloudWatch::Alarm
    Properties:
      AlarmDescription: !Sub "developer-ingest-${{Stage}}: {description}"
      Namespace: AWS/Lambda
      MetricName: {metric}
      Dimensions:
        - {{ Name: FunctionName, Value: !Sub "${{{name}Function}}" }}
{dimensions}{statistic}"""


def function_resources(name):
    return f"""\
  {name}LogGroup:
    Type: AWS::Logs::LogGroup
    DeletionPolicy: !If [IsProduction, Retain, Delete]
    UpdateReplacePolicy: !If [IsProduction, Retain, Delete]
    Properties:
      LogGroupName: !Sub /developer-ingest/${{Stage}}/{name}
      RetentionInDays: !Ref LogRetentionDays
""" + lambda_alarm(
        name, "Errors", f"the {name} function's current version failed (crash, panic or timeout)", ANY_IN_A_MINUTE,
        # The version the alias serves (during a canary, the new one).
        dimensions=f"""\
        - {{ Name: Resource, Value: !Sub "${{{name}Function}}:live" }}
        - {{ Name: ExecutedVersion, Value: !Sub "${{{name}Function.Version.Version}}" }}
""",
    ) + lambda_alarm(
        name, "Throttles", f"invocations of the {name} function were throttled", ANY_IN_A_MINUTE
    ) + lambda_alarm(
        name, "Duration", f"the {name} function's p99 duration is near its timeout", P99_NEAR_THE_TIMEOUT
    )


def table_alarm(metric):
    operations = "".join(
        f"""\
        - Id: {operation.lower()}
          ReturnData: false
          MetricStat:
            Metric:
              Namespace: AWS/DynamoDB
              MetricName: {metric}
              Dimensions: [{{ Name: TableName, Value: !Ref Table }}, {{ Name: Operation, Value: {operation} }}]
            Period: 60
            Stat: Sum
"""
        for operation in TABLE_OPERATIONS
    )
    return f"""\
  Table{metric}Alarm:
    Type: AWS::CloudWatch::Alarm
    Properties:
      AlarmDescription: !Sub "developer-ingest-${{Stage}}: DynamoDB {metric} on the table"
      Metrics:
        - Id: total
          Label: "{metric}, all operations"
          Expression: SUM(METRICS())
{operations}\
      EvaluationPeriods: 1
      Threshold: 0
      ComparisonOperator: GreaterThanThreshold
      TreatMissingData: notBreaching
{NOTIFY}"""


def comment(text, indent):
    """A YAML comment block from endpoints.toml's multi-line text."""
    return "".join(f"{indent}# {line}\n" for line in text.strip().splitlines())


def actions(names):
    return "[" + ", ".join(f"dynamodb:{name}" for name in names) + "]"


def leading_keys(patterns):
    quoted = ", ".join(f'"{pattern}"' for pattern in patterns)
    return f"""\
              Condition:
                ForAllValues:StringLike:
                  dynamodb:LeadingKeys: [{quoted}]
"""


# Every authenticated function records its key's use (`APIKEY#<key_id>`, at most hourly)
# and counts its requests (`RATELIMIT#<key_id>#<window>`): UpdateItem on those and nothing else.
KEY_BOOKKEEPING = ["APIKEY#*", "RATELIMIT#*"]


def policies(endpoint):
    """The function's DynamoDB statements: reads anywhere, writes only under write_keys."""
    statements = ""
    if endpoint.get("reads"):
        resource = (
            '[!GetAtt Table.Arn, !Sub "${Table.Arn}/index/*"]' if endpoint.get("indexes") else "!GetAtt Table.Arn"
        )
        statements += f"""\
            - Effect: Allow
              Action: {actions(endpoint["reads"])}
              Resource: {resource}
"""
    if endpoint.get("writes"):
        statements += f"""\
            # Writes only tenant items (endpoints.toml, write_keys).
            - Effect: Allow
              Action: {actions(endpoint["writes"])}
              Resource: !GetAtt Table.Arn
{leading_keys(endpoint["write_keys"])}"""
    if endpoint.get("auth", True):
        statements += f"""\
            # UpdateItem only for the API key's own bookkeeping (rate-limit counters, last
            # use), never on tenant items.
            - Effect: Allow
              Action: [dynamodb:UpdateItem]
              Resource: !GetAtt Table.Arn
{leading_keys(KEY_BOOKKEEPING)}"""
    if not statements:
        return ""
    return "      Policies:\n        - Statement:\n" + statements


def route_path(path):
    """A route path, quoted when YAML would otherwise read `{...}` as a mapping."""
    return f'"{path}"' if "{" in path else path


def function_resource(endpoint):
    name, method = endpoint["name"], endpoint["method"]
    path = API_BASE_PATH + endpoint["path"]
    memory = ""
    if "memory" in endpoint:
        memory = comment(endpoint.get("memory_why", ""), "      ") + f"      MemorySize: {endpoint['memory']}\n"
    return (
        (comment(endpoint["comment"], "  ") if "comment" in endpoint else "")
        + f"""\
  {name}Function:
    Type: AWS::Serverless::Function
    Metadata:
      BuildMethod: makefile
    Properties:
      FunctionName: !Sub developer-ingest-${{Stage}}-{endpoint["function"]}
      LoggingConfig:
        LogGroup: !Ref {name}LogGroup
      DeploymentPreference:
        Alarms: [!Ref {name}ErrorsAlarm, !Ref Api5xxRateAlarm]
{memory}\
      Events:
        Route:
          Type: HttpApi
          Properties: {{ ApiId: !Ref HttpApi, Method: {method}, Path: {route_path(path.rstrip("/"))} }}
        # HTTP APIs reject route paths ending in "/": this greedy route takes the documented
        # trailing-slash form; the function answers 404 for any longer path.
        RouteWithSlash:
          Type: HttpApi
          Properties: {{ ApiId: !Ref HttpApi, Method: {method}, Path: "{path}{{proxy+}}" }}
"""
        + policies(endpoint)
    )


def replace_block(text, block, body, indent="  ", file="template.yaml"):
    """The text with the lines between block's BEGIN and END markers set to body."""
    pattern = re.compile(
        rf"(^{indent}# BEGIN generated: {block}\b[^\n]*\n).*?(^{indent}# END generated: {block}\n)", re.M | re.S
    )
    if len(pattern.findall(text)) != 1:
        sys.exit(f"{file}: expected one '# BEGIN generated: {block}' ... '# END generated: {block}'")
    return pattern.sub(lambda m: m.group(1) + body + m.group(2), text)


def generate(template, table):
    names = [endpoint["name"] for endpoint in table]
    template = replace_block(template, "functions", "\n".join(map(function_resource, table)))
    template = replace_block(template, "function logs and alarms", "".join(map(function_resources, names)))
    return replace_block(template, "table alarms", "".join(map(table_alarm, TABLE_METRICS)))


def router(table):
    """Cargo.toml's [workspace.metadata.lambda.watch.router]: every path with and without
    its slash; a path two endpoints share is routed by method."""
    routes = {}
    for endpoint in table:
        for path in [endpoint["path"], *endpoint.get("also", [])]:
            routes.setdefault(API_BASE_PATH + path, []).append((endpoint["method"], endpoint["function"]))
    lines = []
    for path, targets in routes.items():
        if len(targets) == 1:
            value = f'"{targets[0][1]}"'
        else:
            value = "[" + ", ".join(f'{{ method = "{m}", function = "{f}" }}' for m, f in targets) + "]"
        lines += [f'"{path}" = {value}\n', f'"{path.rstrip("/")}" = {value}\n']
    return "".join(lines)


def main():
    table = endpoints()
    files = [
        (TEMPLATE, lambda text: generate(text, table)),
        (CARGO_TOML, lambda text: replace_block(text, "watch router", router(table), indent="", file="Cargo.toml")),
    ]
    stale = []
    for path, write in files:
        current = path.read_text()
        expected = write(current)
        if current == expected:
            continue
        if "--check" in sys.argv[1:]:
            stale.append(path.name)
        else:
            path.write_text(expected)
            print(f"{path.name}: generated parts rewritten")
    if stale:
        sys.exit(f"{', '.join(stale)}: the generated parts are stale, run: make template")


if __name__ == "__main__":
    main()
