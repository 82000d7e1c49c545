//! moto's server mode as AWS Secrets Manager on a free loopback port, with an IAM user whose
//! key the runbooks sign with; once set up, moto checks every request's SigV4 signature.
//! It needs the `loopback` module at the crate root.

#![allow(dead_code)]

use std::process::{Command, Stdio};

use serde_json::Value;

use crate::loopback::{self, Background, venv_bin};

pub struct Moto {
    pub url: String,
    pub key_id: String,
    pub secret_key: String,
    _server: Background,
}

/// What every setup starts with: the clients (`iam`, `sm`), the IAM user the runbooks sign
/// as, and the setup's own values in `args`.
const PRELUDE: &str = r#"
import json, sys, urllib.request
import boto3
url = sys.argv[1]
args = sys.argv[2:]
kw = dict(endpoint_url=url, region_name="eu-west-1", aws_access_key_id="setup", aws_secret_access_key="setup")
iam = boto3.client("iam", **kw)
iam.create_user(UserName="runbook")
key = iam.create_access_key(UserName="runbook")["AccessKey"]
policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "secretsmanager:*", "Resource": "*"}]}
iam.put_user_policy(UserName="runbook", PolicyName="secrets", PolicyDocument=json.dumps(policy))
sm = boto3.client("secretsmanager", **kw)
"#;

/// Turns signature checking on and hands the user's key to the test.
const EPILOGUE: &str = r#"
urllib.request.urlopen(urllib.request.Request(url + "/moto-api/reset-auth", data=b"0", method="POST", headers={"Content-Type": "text/plain"}))
print(json.dumps({"id": key["AccessKeyId"], "secret": key["SecretAccessKey"]}))
"#;

const READ: &str = r#"
import sys, boto3
url, key_id, secret, name, stage = sys.argv[1:6]
sm = boto3.client("secretsmanager", endpoint_url=url, region_name="eu-west-1", aws_access_key_id=key_id, aws_secret_access_key=secret)
sys.stdout.write(sm.get_secret_value(SecretId=name, VersionStage=stage)["SecretString"])
"#;

impl Moto {
    /// moto with the secrets `setup` creates (Python using `sm` and `args`).
    pub fn start(setup: &str, args: &[&str]) -> Self {
        let port = loopback::free_port();
        let mut child = Command::new(venv_bin("moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        loopback::wait_for_port(port, &mut child, "moto_server");
        let server = Background(child);
        let url = format!("http://127.0.0.1:{port}");
        let script = format!("{PRELUDE}{setup}{EPILOGUE}");
        let output = Command::new(venv_bin("python"))
            .args(["-c", &script, &url])
            .args(args)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "moto setup failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let keys: Value = serde_json::from_slice(&output.stdout).unwrap();
        Self {
            url,
            key_id: keys["id"].as_str().unwrap().to_owned(),
            secret_key: keys["secret"].as_str().unwrap().to_owned(),
            _server: server,
        }
    }

    /// The current value of a secret, read with boto3 as another client would.
    pub fn read(&self, name: &str) -> String {
        self.read_stage(name, "AWSCURRENT")
    }

    /// The value of a secret at a version stage (`AWSCURRENT`, `AWSPREVIOUS`).
    pub fn read_stage(&self, name: &str, stage: &str) -> String {
        let output = Command::new(venv_bin("python"))
            .args([
                "-c",
                READ,
                &self.url,
                &self.key_id,
                &self.secret_key,
                name,
                stage,
            ])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "reading {name} from moto failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// The variables the runbook signs its requests with.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", self.key_id.clone()),
            ("AWS_SECRET_ACCESS_KEY", self.secret_key.clone()),
            ("AWS_REGION", "eu-west-1".into()),
        ]
    }
}
