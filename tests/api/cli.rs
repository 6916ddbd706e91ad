//! The `hookd` binary as an operator uses it.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use hookd::grpc::pb;
use hookd::grpc::pb::endpoint_service_client::EndpointServiceClient;

use crate::helpers::{Backend, TestDb, database_args};

fn hookd() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hookd"));
    // The operator's environment must not leak into these runs.
    for (key, _) in std::env::vars() {
        if key.starts_with("HOOKD_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

fn backends() -> Vec<Backend> {
    std::iter::once(Backend::Sqlite)
        .chain(Backend::postgres())
        .collect()
}

#[test]
fn project_create_json_prints_exactly_one_object_and_list_shows_it() {
    for backend in backends() {
        let test_db = TestDb::new(&backend);
        let db = database_args(&test_db);
        let out = hookd()
            .args(["project", "create", "--name", "acme", "--json"])
            .args(&db)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{backend:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8(out.stdout).unwrap();
        let object: serde_json::Value =
            serde_json::from_str(stdout.trim()).expect("one JSON value");
        let fields = object.as_object().expect("an object");
        assert_eq!(fields.len(), 2, "{stdout}");
        let project = fields["project_id"].as_str().unwrap();
        let key = fields["api_key"].as_str().unwrap();
        assert!(project.starts_with("proj_"));
        assert!(key.len() >= 43, "at least 256 bits of key: {key}");
        assert_eq!(stdout.trim().lines().count(), 1);

        let list = hookd()
            .args(["project", "list", "--json"])
            .args(&db)
            .output()
            .unwrap();
        assert!(list.status.success());
        let listed: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
        assert_eq!(listed[0]["project_id"], project);
        assert_eq!(listed[0]["name"], "acme");
        assert!(
            !String::from_utf8_lossy(&list.stdout).contains(key),
            "list never shows a key"
        );

        let rotated = hookd()
            .args(["project", "rotate-key", "--project", project, "--json"])
            .args(&db)
            .output()
            .unwrap();
        assert!(rotated.status.success());
        let rotated: serde_json::Value = serde_json::from_slice(&rotated.stdout).unwrap();
        assert_eq!(rotated["project_id"], project);
        assert_ne!(rotated["api_key"], key);
    }
}

#[test]
fn serve_answers_with_a_created_key_and_exits_0_on_sigterm() {
    for backend in backends() {
        let test_db = TestDb::new(&backend);
        let db = database_args(&test_db);
        let out = hookd()
            .args(["project", "create", "--name", "acme", "--json"])
            .args(&db)
            .output()
            .unwrap();
        let created: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let key = created["api_key"].as_str().unwrap().to_owned();

        let mut child = hookd()
            .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
            .args(&db)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let (tx, rx) = mpsc::channel::<String>();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let addr = loop {
            let line = rx
                .recv_timeout(Duration::from_secs(30))
                .expect("server logs its address");
            let Ok(entry) = serde_json::from_str::<serde_json::Value>(&line) else {
                panic!("log line is not JSON: {line}");
            };
            if entry["message"] == "serving gRPC" {
                break entry["addr"].as_str().unwrap().to_owned();
            }
        };

        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
                .unwrap()
                .connect()
                .await
                .unwrap();
            let mut client = EndpointServiceClient::new(channel);
            let mut request = tonic::Request::new(pb::ListEndpointsRequest::default());
            request
                .metadata_mut()
                .insert("authorization", format!("Bearer {key}").parse().unwrap());
            client
                .list_endpoints(request)
                .await
                .expect("the CLI-made key works");
        });

        let killed = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let status = child.wait().unwrap();
        assert!(status.success(), "{backend:?}: exit status {status:?}");
        let rest: Vec<String> = rx.try_iter().collect();
        assert!(rest.iter().any(|l| l.contains("stopped")), "{rest:?}");
        assert!(!rest.iter().any(|l| l.contains("panicked")), "{rest:?}");
    }
}

#[test]
fn invalid_configuration_exits_nonzero_with_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec![], "a command is required"),
        (
            vec![
                "serve".into(),
                "--shutdown-grace".into(),
                "307445734561825861m".into(),
            ],
            "--shutdown-grace",
        ),
        (
            vec!["serve".into(), "--listen".into(), "nope".into()],
            "--listen",
        ),
        (vec!["serve".into(), "--bogus-flag".into()], "--bogus-flag"),
        (
            vec![
                "--database-url".into(),
                "mysql://x/y".into(),
                "migrate".into(),
            ],
            "--database-url",
        ),
        (
            vec![
                "--data-dir".into(),
                file.join("sub").display().to_string(),
                "migrate".into(),
            ],
            "--data-dir",
        ),
        (
            vec![
                "--data-dir".into(),
                dir.path().display().to_string(),
                "--log-level".into(),
                "info,=[".into(),
                "migrate".into(),
            ],
            "--log-level",
        ),
        (
            vec![
                "--database-url".into(),
                "postgres://postgres@127.0.0.1:1/none".into(),
                "migrate".into(),
            ],
            "Connection refused",
        ),
        (
            vec![
                "--data-dir".into(),
                dir.path().display().to_string(),
                "project".into(),
                "rotate-key".into(),
                "--project".into(),
                "proj_0190a0b1-c2d3-7e4f-8a9b-0c1d2e3f4a5b".into(),
            ],
            "no project",
        ),
    ];
    for (args, mentions) in cases {
        let out = hookd().args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert_eq!(
            stderr.trim().lines().count(),
            1,
            "{args:?}: one line, got:\n{stderr}"
        );
        assert!(stderr.contains(mentions), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}
