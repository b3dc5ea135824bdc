#!/usr/bin/env python3
"""Writes template.yaml's generated resources: per function its log group and alarms, and
the table's alarms, between the `# BEGIN generated:` and `# END generated:` markers.

They were `Fn::ForEach` loops, which `sam build` cannot read (aws/aws-sam-cli#5647, #6903):
this expands them into explicit resources instead. The functions are the template's
`AWS::Serverless::Function` resources (`<Name>Function`), in the order they appear.
Run it after adding or removing a function: make template (or with --check: exits 1 if
template.yaml is not what it would write; a test runs that).
"""
import pathlib
import re
import sys

TEMPLATE = pathlib.Path(__file__).resolve().parent.parent / "template.yaml"

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


def function_names(template):
    """`<Name>` of every `<Name>Function` resource of type AWS::Serverless::Function."""
    return re.findall(r"^  ([A-Za-z0-9]+)Function:\n    Type: AWS::Serverless::Function$", template, re.M)


def replace_block(template, block, body):
    """The template with the lines between block's BEGIN and END markers set to body."""
    pattern = re.compile(
        rf"(^  # BEGIN generated: {block}\b[^\n]*\n).*?(^  # END generated: {block}\n)", re.M | re.S
    )
    if len(pattern.findall(template)) != 1:
        sys.exit(f"template.yaml: expected one '# BEGIN generated: {block}' ... '# END generated: {block}'")
    return pattern.sub(lambda m: m.group(1) + body + m.group(2), template)


def generate(template):
    names = function_names(template)
    if not names:
        sys.exit("template.yaml: no AWS::Serverless::Function resources found")
    template = replace_block(template, "function logs and alarms", "".join(map(function_resources, names)))
    return replace_block(template, "table alarms", "".join(map(table_alarm, TABLE_METRICS)))


def main():
    current = TEMPLATE.read_text()
    expected = generate(current)
    if "--check" in sys.argv[1:]:
        if current != expected:
            sys.exit("template.yaml: the generated resources are stale, run: make template")
        return
    if current != expected:
        TEMPLATE.write_text(expected)
        print("template.yaml: generated resources rewritten")


if __name__ == "__main__":
    main()
