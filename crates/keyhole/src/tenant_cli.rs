//! `keyhole tenant …`: a project's tenants from the command line — the tenancy property, create, list,
//! show, suspend, resume, rotate, delete and erase — as the same HTTP calls the API documents
//! (docs/tenants.md), with the organization key or the project's master key.
//!
//! Design: with `--server URL` the calls go to the running server. Without it the command opens the data
//! directory itself (refused while a server runs on it, as other admin commands are), serves the API on a
//! loopback port for the command's own calls, and closes it; so both ways run the very handlers a
//! server runs, and nothing here knows how a tenant is stored. Opened this way, storage deletes replaced
//! data files at once (no other reader can be using them), so an erase leaves no copy behind when the
//! command exits.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::config::Settings;

#[derive(Args, Debug, Clone)]
pub struct TenantCommand {
    /// The project's id
    #[arg(long, env = "KEYHOLE_PROJECT", global = true)]
    pub project: Option<String>,
    /// A running server's URL (`http://host:port`); without it the command opens the data directory,
    /// which no server may be running on
    #[arg(long, env = "KEYHOLE_SERVER_URL", global = true)]
    pub server: Option<String>,
    /// File holding the organization key or the project's master key
    #[arg(long, env = "KEYHOLE_ADMIN_KEY_FILE", global = true)]
    pub key_file: Option<PathBuf>,
    /// The organization key or the project's master key; prefer KEYHOLE_ADMIN_KEY or --key-file (a
    /// command line is visible to every local user)
    #[arg(long, env = "KEYHOLE_ADMIN_KEY", hide_env_values = true, global = true)]
    pub key: Option<String>,
    #[command(subcommand)]
    pub action: TenantAction,
}

#[derive(Subcommand, Debug, Clone)]
pub enum TenantAction {
    /// Show the project's tenancy property, or set it to PROPERTY
    Tenancy { property: Option<String> },
    /// Create a tenant and print it with its read and write keys (shown once)
    Create {
        id: String,
        /// A name for people [default: the id]
        #[arg(long)]
        name: Option<String>,
        /// The keys' options as a JSON object: filters, max_lookback, limits, origins, expires_at
        #[arg(long)]
        options: Option<String>,
    },
    /// List tenants with their usage, a page at a time
    List {
        #[arg(long)]
        limit: Option<usize>,
        /// The last id of the previous page
        #[arg(long)]
        after: Option<String>,
    },
    /// Show a tenant, its keys (never their secrets) and its usage
    Show { id: String },
    /// Suspend a tenant: its keys and embed tokens are refused until it is resumed
    Suspend { id: String },
    /// Resume a suspended tenant
    Resume { id: String },
    /// Give a tenant new keys (printed once); the current ones stop after the grace period
    Rotate {
        id: String,
        /// Seconds the current keys keep working [default: 0, they stop at once]
        #[arg(long)]
        grace_seconds: Option<u64>,
    },
    /// Delete a tenant: revoke its keys and embed tokens; with --erase also delete every one of its
    /// events in every collection, and print the erase receipt
    Delete {
        id: String,
        /// Also delete the tenant's events (cannot be undone)
        #[arg(long)]
        erase: bool,
    },
}

/// One API call.
struct Call {
    method: reqwest::Method,
    /// The path below `/3.0/projects/{project_id}`, with its query string.
    path: String,
    body: Option<Value>,
}

fn url_segment(segment: &str) -> String {
    segment
        .bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-' => {
                (byte as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

fn call_of(action: &TenantAction) -> anyhow::Result<Call> {
    use reqwest::Method;
    let call = |method: Method, path: String, body: Option<Value>| Call { method, path, body };
    Ok(match action {
        TenantAction::Tenancy { property: None } => call(Method::GET, "/tenancy".into(), None),
        TenantAction::Tenancy {
            property: Some(property),
        } => call(
            Method::PUT,
            "/tenancy".into(),
            Some(json!({"property": property})),
        ),
        TenantAction::Create { id, name, options } => {
            let mut body = json!({"id": id});
            if let Some(name) = name {
                body["name"] = json!(name);
            }
            if let Some(options) = options {
                body["options"] =
                    serde_json::from_str(options).context("--options must be a JSON object")?;
            }
            call(Method::POST, "/tenants".into(), Some(body))
        }
        TenantAction::List { limit, after } => {
            let mut query = Vec::new();
            if let Some(limit) = limit {
                query.push(format!("limit={limit}"));
            }
            if let Some(after) = after {
                query.push(format!("after={}", url_segment(after)));
            }
            let query = if query.is_empty() {
                String::new()
            } else {
                format!("?{}", query.join("&"))
            };
            call(Method::GET, format!("/tenants{query}"), None)
        }
        TenantAction::Show { id } => {
            call(Method::GET, format!("/tenants/{}", url_segment(id)), None)
        }
        TenantAction::Suspend { id } | TenantAction::Resume { id } => call(
            Method::PATCH,
            format!("/tenants/{}", url_segment(id)),
            Some(json!({"suspended": matches!(action, TenantAction::Suspend { .. })})),
        ),
        TenantAction::Rotate { id, grace_seconds } => call(
            Method::POST,
            format!("/tenants/{}/rotate-keys", url_segment(id)),
            Some(json!({"grace_seconds": grace_seconds.unwrap_or(0)})),
        ),
        TenantAction::Delete { id, erase } => call(
            Method::DELETE,
            format!(
                "/tenants/{}{}",
                url_segment(id),
                if *erase { "?erase=true" } else { "" }
            ),
            None,
        ),
    })
}

fn admin_key(command: &TenantCommand) -> anyhow::Result<String> {
    match (&command.key_file, &command.key) {
        (Some(path), _) => std::fs::read_to_string(path)
            .map(|text| text.trim().to_string())
            .with_context(|| format!("cannot read {}", path.display())),
        (None, Some(key)) => Ok(key.clone()),
        (None, None) => anyhow::bail!(
            "give the organization key or the project's master key with --key-file or KEYHOLE_ADMIN_KEY"
        ),
    }
}

/// Sends `call` to the server at `base_url`; the answer's body (`null` for none), or the API's error.
async fn send(base_url: &str, project: &str, key: &str, call: Call) -> anyhow::Result<Value> {
    let url = format!(
        "{}/3.0/projects/{}{}",
        base_url.trim_end_matches('/'),
        url_segment(project),
        call.path
    );
    let mut request = reqwest::Client::new()
        .request(call.method, &url)
        .header("Authorization", key);
    if let Some(body) = call.body {
        request = request.json(&body);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("cannot reach {base_url}"))?;
    let status = response.status();
    let text = response.text().await.context("cannot read the answer")?;
    let body: Value = if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    if !status.is_success() {
        let message = body["message"].as_str().unwrap_or("no message");
        let code = body["error_code"].as_str().unwrap_or("no error code");
        anyhow::bail!("{} {code}: {message}", status.as_u16());
    }
    Ok(body)
}

/// Runs `keyhole tenant …`, printing the answer as JSON.
pub async fn tenant_command(settings: Settings, command: &TenantCommand) -> anyhow::Result<()> {
    let project = command
        .project
        .clone()
        .context("give the project with --project or KEYHOLE_PROJECT")?;
    let key = admin_key(command)?;
    let call = call_of(&command.action)?;
    let answer = if let Some(base_url) = &command.server {
        send(base_url, &project, &key, call).await?
    } else {
        let local = crate::LocalServer::open(
            &settings,
            "pass --server with the running server's URL instead",
        )
        .await?;
        let answer = send(&local.base_url, &project, &key, call).await;
        local.close().await?;
        answer?
    };
    if answer.is_null() {
        println!("{}", json!({"done": true}));
    } else {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    }
    Ok(())
}
