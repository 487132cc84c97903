//! Policy reload: a changed role takes effect without a restart (on file change, and on SIGHUP);
//! a broken file is refused and the policy in force stays.

use std::path::Path;
use std::time::Duration;

use crate::common::*;
use polarway::{Code, DistributedClient};

fn policy(datasets: &str) -> String {
    format!(
        r#"
[[identity]]
name = "admin"
token = "admin-token"
roles = ["admin"]

[[identity]]
name = "ann"
token = "ann-token"
roles = ["analyst"]

[roles.admin]
methods = ["*"]
datasets = ["*"]

[roles.analyst]
methods = ["Load", "Describe"]
datasets = [{datasets}]
"#
    )
}

fn reloads(gw: &Gateway, result: &str) -> u64 {
    let text = http_get(&gw.metrics_url());
    let prefix = format!("polarway_gateway_policy_reloads_total{{result=\"{result}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0)
}

async fn client(gw: &Gateway, token: &str) -> DistributedClient {
    DistributedClient::builder(gw.url())
        .auth_token(token)
        .retries(0, Duration::ZERO)
        .connect()
        .await
        .unwrap()
}

fn write(path: &Path, text: &str) {
    write_atomic(path, text);
}

#[tokio::test(flavor = "multi_thread")]
async fn changed_roles_apply_and_broken_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    write(&path, &policy(r#""trades_*""#));
    let cluster = Cluster::start(1);
    let p = path.to_str().unwrap();
    let watching = Gateway::start(&cluster, &["--policy", p, "--policy-poll", "0.2"]);
    let on_hup = Gateway::start(&cluster, &["--policy", p, "--policy-poll", "3600"]);

    let admin = client(&watching, "admin-token").await;
    admin.store("quotes_x", &frame(4)).await.unwrap();
    let ann = client(&watching, "ann-token").await;
    let ann_hup = client(&on_hup, "ann-token").await;
    assert_eq!(code_of(ann.load("quotes_x").await), Code::PermissionDenied);
    assert_eq!(
        code_of(ann_hup.load("quotes_x").await),
        Code::PermissionDenied
    );

    // Grant quotes_* : the watching gateway picks it up by itself.
    write(&path, &policy(r#""trades_*", "quotes_*""#));
    assert!(
        eventually(Duration::from_secs(20), || async {
            ann.load("quotes_x").await.is_ok()
        })
        .await
    );
    // The other one only on SIGHUP.
    assert_eq!(
        code_of(ann_hup.load("quotes_x").await),
        Code::PermissionDenied
    );
    on_hup.proc.signal(libc::SIGHUP);
    assert!(
        eventually(Duration::from_secs(20), || async {
            ann_hup.load("quotes_x").await.is_ok()
        })
        .await
    );

    // A broken file (bad TOML, then a role naming nothing) is refused; the policy in force stays.
    for broken in [
        "[roles.analyst\nmethods = ",
        &policy(r#""trades_*""#).replace("roles = [\"analyst\"]", "roles = [\"nobody\"]"),
    ] {
        let refused = reloads(&watching, "refused");
        write(&path, broken);
        assert!(
            eventually(Duration::from_secs(20), || async {
                reloads(&watching, "refused") > refused
            })
            .await,
            "the broken file was not looked at"
        );
        assert_eq!(ann.load("quotes_x").await.unwrap().height(), 4);
        assert_eq!(admin.describe("quotes_x").await.unwrap().rows, 4);
    }
    assert!(reloads(&watching, "ok") >= 1);
}
