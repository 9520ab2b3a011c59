//! What cfn-lint cannot see in template.yaml: the wiring between the
//! template, the function crates and the code's own expectations.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_yaml::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn template() -> Value {
    let text = std::fs::read_to_string(root().join("template.yaml")).unwrap();
    serde_yaml::from_str(&text).expect("template.yaml parses")
}

/// `!Ref X` → X, `!GetAtt X.Y` → (X, Y).
fn tag<'a>(v: &'a Value, name: &str) -> Option<&'a str> {
    match v {
        Value::Tagged(t) if t.tag == name => t.value.as_str(),
        _ => None,
    }
}

fn functions(t: &Value) -> Vec<(String, &Value)> {
    t["Resources"]
        .as_mapping()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::Serverless::Function")
        .map(|(k, r)| (k.as_str().unwrap().to_owned(), &r["Properties"]))
        .collect()
}

fn resource_type<'a>(t: &'a Value, name: &str) -> &'a str {
    t["Resources"][name]["Type"].as_str().unwrap_or("")
}

fn events(props: &Value) -> Vec<(String, &Value)> {
    props["Events"]
        .as_mapping()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.as_str().unwrap().to_owned(), v))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn every_queue_and_stream_event_reports_batch_item_failures() {
    let t = template();
    for (f, props) in functions(&t) {
        for (name, e) in events(props) {
            let ty = e["Type"].as_str().unwrap();
            if ty == "SQS" || ty == "DynamoDB" {
                let types: Vec<&str> = e["Properties"]["FunctionResponseTypes"]
                    .as_sequence()
                    .map(|s| s.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                assert_eq!(types, ["ReportBatchItemFailures"], "{f}.{name}");
            }
        }
    }
}

#[test]
fn every_stream_event_points_at_a_tables_stream_arn() {
    let t = template();
    let mut seen = 0;
    for (f, props) in functions(&t) {
        for (name, e) in events(props)
            .into_iter()
            .filter(|(_, e)| e["Type"] == "DynamoDB")
        {
            let target = tag(&e["Properties"]["Stream"], "!GetAtt")
                .unwrap_or_else(|| panic!("{f}.{name}: !GetAtt"));
            let (table, attr) = target.split_once('.').unwrap();
            assert_eq!(
                attr, "StreamArn",
                "{f}.{name} points at {target}, not the stream"
            );
            assert_eq!(
                resource_type(&t, table),
                "AWS::DynamoDB::Table",
                "{f}.{name}"
            );
            let view =
                &t["Resources"][table]["Properties"]["StreamSpecification"]["StreamViewType"];
            assert_eq!(view, "NEW_AND_OLD_IMAGES", "{table}");
            seen += 1;
        }
    }
    assert!(seen >= 3, "reprice, publish and monitor follow streams");
}

#[test]
fn every_code_uri_is_a_workspace_function_crate_of_the_same_name() {
    let t = template();
    let workspace = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    for (f, props) in functions(&t) {
        let uri = props["CodeUri"].as_str().unwrap();
        let dir = root().join(uri);
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml"))
            .unwrap_or_else(|_| panic!("{f}: {uri}/Cargo.toml"));
        let name = uri.rsplit('/').next().unwrap();
        assert!(
            manifest.contains(&format!("name = \"{name}\"")),
            "{f}: package must be named {name}"
        );
        assert!(
            workspace.contains(&format!("\"{uri}\"")),
            "{f}: {uri} is not a workspace member"
        );
        assert!(dir.join("src/main.rs").exists(), "{f}: {uri}/src/main.rs");
        let meta = &t["Resources"][f.as_str()]["Metadata"]["BuildMethod"];
        assert_eq!(meta, "rust-cargolambda", "{f}");
    }
}

/// The environment a function's main.rs asks `Config::from_env` for.
fn variables_read_by(main_rs: &str) -> BTreeSet<String> {
    let mut vars = BTreeSet::new();
    if main_rs.contains("Table::State") {
        vars.insert("STATE_TABLE".to_owned());
    }
    if main_rs.contains("Table::Audit") {
        vars.insert("AUDIT_TABLE".to_owned());
    }
    for (constant, var) in [
        ("queues::INBOUND", "INBOUND_QUEUE_URL"),
        ("queues::STOCK", "STOCK_QUEUE_URL"),
        ("queues::ORDER", "ORDER_QUEUE_URL"),
        ("queues::SIGNAL", "SIGNAL_QUEUE_URL"),
        ("queues::OUTBOUND", "OUTBOUND_QUEUE_URL"),
    ] {
        if main_rs.contains(constant) {
            vars.insert(var.to_owned());
        }
    }
    if main_rs.contains("\"ALERT_TOPIC_ARN\"") {
        vars.insert("ALERT_TOPIC_ARN".to_owned());
    }
    vars
}

#[test]
fn each_function_is_given_exactly_the_tables_and_queues_it_reads_and_granted_exactly_those() {
    let t = template();
    for (f, props) in functions(&t) {
        let main_rs = std::fs::read_to_string(
            root()
                .join(props["CodeUri"].as_str().unwrap())
                .join("src/main.rs"),
        )
        .unwrap();
        let env = &props["Environment"]["Variables"];
        let mut given: BTreeSet<String> = env
            .as_mapping()
            .map(|m| {
                m.keys()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        given.remove("TALLY_ADMIN_TOKEN");
        assert_eq!(
            given,
            variables_read_by(&main_rs),
            "{f}: environment vs what main.rs reads"
        );

        // Resources named in the environment, by logical id.
        let in_env: BTreeSet<String> = env
            .as_mapping()
            .map(|m| {
                m.values()
                    .filter_map(|v| tag(v, "!Ref"))
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let mut granted = BTreeSet::new();
        for p in props["Policies"].as_sequence().into_iter().flatten() {
            if let Some(m) = p.as_mapping() {
                for (k, v) in m {
                    match k.as_str().unwrap() {
                        "DynamoDBCrudPolicy" | "DynamoDBReadPolicy" => {
                            granted.insert(tag(&v["TableName"], "!Ref").unwrap().to_owned());
                        }
                        "SNSPublishMessagePolicy" => {
                            let t = tag(&v["TopicName"], "!GetAtt").unwrap();
                            granted.insert(t.trim_end_matches(".TopicName").to_owned());
                        }
                        "SQSSendMessagePolicy" => {
                            let q = tag(&v["QueueName"], "!GetAtt").unwrap();
                            granted.insert(q.trim_end_matches(".QueueName").to_owned());
                        }
                        "Statement" => {
                            for st in v.as_sequence().unwrap() {
                                let r = tag(&st["Resource"], "!GetAtt").unwrap();
                                granted.insert(r.split('.').next().unwrap().to_owned());
                            }
                        }
                        other => {
                            panic!("{f}: policy {other} is not checked here; extend this test")
                        }
                    }
                }
            }
        }
        let in_env: BTreeSet<String> = in_env.into_iter().filter(|r| r != "AdminToken").collect();
        assert_eq!(granted, in_env, "{f}: granted vs used (least privilege)");
    }
}

#[test]
fn every_queue_has_a_dead_letter_queue_and_every_dead_letter_queue_an_alarm() {
    let t = template();
    let resources = t["Resources"].as_mapping().unwrap();
    let queues: Vec<&str> = resources
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::SQS::Queue")
        .map(|(k, _)| k.as_str().unwrap())
        .collect();
    let alarmed: BTreeSet<&str> = resources
        .values()
        .filter(|r| r["Type"] == "AWS::CloudWatch::Alarm")
        .filter_map(|r| tag(&r["Properties"]["Dimensions"][0]["Value"], "!GetAtt"))
        .map(|v| v.split('.').next().unwrap())
        .collect();
    for q in queues {
        let props = &t["Resources"][q]["Properties"];
        assert_eq!(props["FifoQueue"], Value::Bool(true), "{q}");
        if q.ends_with("DLQ") {
            assert!(alarmed.contains(q), "{q} has no alarm");
        } else {
            let redrive = &props["RedrivePolicy"];
            let dlq = tag(&redrive["deadLetterTargetArn"], "!GetAtt").unwrap();
            assert_eq!(
                dlq,
                format!("{}DLQ.Arn", q.trim_end_matches("Queue")),
                "{q}"
            );
            assert!(
                redrive["maxReceiveCount"]
                    .as_u64()
                    .is_some_and(|n| (1..=10).contains(&n)),
                "{q}"
            );
        }
    }
}
