//! Configuration sources: command line over environment over TOML file over defaults, and `--help`.

use std::process::Command;

use crate::support::{BinaryServer, keyhole_binary};

#[test]
fn help_documents_every_option() {
    let output = Command::new(keyhole_binary())
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8(output.stdout).unwrap();
    for option in [
        "--data-dir",
        "--listen",
        "--org-key",
        "--config",
        "--flush-interval-secs",
        "--flush-rows",
        "--file-cache-mb",
        "KEYHOLE_FILE_CACHE_MB",
        "KEYHOLE_DATA_DIR",
        "KEYHOLE_LISTEN",
        "KEYHOLE_ORG_KEY",
        "KEYHOLE_CONFIG",
        "127.0.0.1:7070",
        "./keyhole-data",
    ] {
        assert!(
            help.contains(option),
            "serve --help lacks {option}:\n{help}"
        );
    }
    let output = Command::new(keyhole_binary())
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(output.stdout).unwrap();
    assert!(help.contains("serve") && help.contains("project"), "{help}");
}

#[test]
fn settings_come_from_cli_then_env_then_file() {
    let root = tempfile::tempdir().unwrap();
    let from_file = root.path().join("from-file");
    let from_env = root.path().join("from-env");
    let from_cli = root.path().join("from-cli");
    let config_path = root.path().join("keyhole.toml");
    std::fs::write(
        &config_path,
        format!(
            "data_dir = {:?}\nlisten = \"127.0.0.1:0\"\norg_key = \"file-org-key-0123456789abcdef0123456789\"\n",
            from_file.to_str().unwrap()
        ),
    )
    .unwrap();
    let config_arg = config_path.to_str().unwrap().to_string();

    let server = BinaryServer::start_raw(
        &["serve".into(), "--config".into(), config_arg.clone()],
        &[],
    );
    assert!(from_file.join("meta.sqlite").exists());
    assert!(
        !server
            .stdout_lines
            .iter()
            .any(|line| line.starts_with("organization key")),
        "a configured org key is not generated"
    );
    drop(server);

    let server = BinaryServer::start_raw(
        &["serve".into()],
        &[
            ("KEYHOLE_CONFIG", &config_arg),
            ("KEYHOLE_DATA_DIR", from_env.to_str().unwrap()),
        ],
    );
    assert!(from_env.join("meta.sqlite").exists());
    drop(server);

    let server = BinaryServer::start_raw(
        &[
            "serve".into(),
            "--data-dir".into(),
            from_cli.to_str().unwrap().into(),
        ],
        &[
            ("KEYHOLE_CONFIG", &config_arg),
            ("KEYHOLE_DATA_DIR", from_env.to_str().unwrap()),
            ("KEYHOLE_ORG_KEY", "env-org-key-0123456789abcdef01234567890"),
        ],
    );
    assert!(from_cli.join("meta.sqlite").exists());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let url = format!("{}/3.0/organizations/default/projects", server.base_url);
        let (status, _) = crate::support::send(
            crate::support::client()
                .get(&url)
                .header("Authorization", "env-org-key-0123456789abcdef01234567890"),
        )
        .await;
        assert_eq!(
            status, 200,
            "the environment's org key wins over the file's"
        );
        let (status, _) = crate::support::send(
            crate::support::client()
                .get(&url)
                .header("Authorization", "file-org-key-0123456789abcdef0123456789"),
        )
        .await;
        assert_eq!(status, 401);
    });

    let bad_config = root.path().join("bad.toml");
    std::fs::write(&bad_config, "unknown_setting = 1\n").unwrap();
    let output = Command::new(keyhole_binary())
        .args(["serve", "--config", bad_config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown_setting"));
}

/// `keyhole project list` with a config file holding `data_dir` and `line`.
fn project_list_with_config(root: &std::path::Path, line: &str) -> std::process::Output {
    let config_path = root.join("keyhole.toml");
    let data_dir = root.join("data");
    std::fs::write(
        &config_path,
        format!("data_dir = {:?}\n{line}\n", data_dir.to_str().unwrap()),
    )
    .unwrap();
    Command::new(keyhole_binary())
        .args(["project", "list", "--config"])
        .arg(&config_path)
        .output()
        .unwrap()
}

/// A key no setting has, or a value of the wrong type, refuses the file, naming the key.
#[test]
fn a_config_file_with_an_unknown_key_or_a_mistyped_value_is_refused() {
    let root = tempfile::tempdir().unwrap();
    for (line, expected) in [
        ("flush_rowz = 10", "unknown setting `flush_rowz`"),
        ("flush_rows = \"many\"", "flush_rows in the config file"),
        ("memory_limit = \"lots\"", "memory_limit in the config file"),
    ] {
        let output = project_list_with_config(root.path(), line);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{line}: {stderr}");
        assert!(stderr.contains(expected), "{line}: {stderr}");
    }
    // A size in the file: bytes or text with a unit.
    let output = project_list_with_config(root.path(), "memory_limit = \"1GiB\"");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
