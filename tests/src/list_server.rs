//! A rule-list server: nginx serving a folder over plain HTTP on the lab's server, with the
//! `ETag` and `Last-Modified` validators nginx gives static files, and an access log of each
//! request's status (200, 304, 404) to tell full downloads from conditional ones.

use std::{
    fs,
    net::SocketAddr,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result};

use crate::child::ChildGuard;
use crate::lab::Lab;
use crate::scratch::ScratchDir;
use crate::tls_server::{nginx_prelude, start_nginx};

/// The port lists are served on (plain HTTP).
pub const LIST_PORT: u16 = 8080;

/// nginx serving `root()` at `http://SERVER:8080/`. Stopped on drop.
#[derive(Debug)]
pub struct ListServer {
    // Field order is drop order: stop nginx before its files go.
    nginx: ChildGuard,
    dir: ScratchDir,
    base: String,
}

impl ListServer {
    /// Starts nginx in `lab`'s server namespace; returns once it accepts connections.
    pub fn start(lab: &Lab) -> Result<Self> {
        let dir = ScratchDir::new("lists")?;
        fs::create_dir_all(dir.path().join("www")).context("cannot make the served folder")?;
        let target = SocketAddr::new(lab.server_v4().into(), LIST_PORT);
        let nginx = start_nginx(lab, dir.path(), &config(dir.path()), &[target])?;
        Ok(Self {
            nginx,
            base: format!("http://{target}"),
            dir,
        })
    }

    /// The folder served at `/`.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("www")
    }

    /// The URL of `file` in [`ListServer::root`].
    pub fn url(&self, file: &str) -> String {
        format!("{}/{file}", self.base)
    }

    /// Publishes `content` as `file`.
    pub fn publish(&self, file: &str, content: &[u8]) -> Result<()> {
        fs::write(self.root().join(file), content).with_context(|| format!("cannot publish {file}"))
    }

    /// One line per request so far: `"GET /FILE HTTP/1.1" STATUS`.
    pub fn access_log(&self) -> String {
        fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }

    /// The statuses of the requests for `/file` so far, in order.
    pub fn statuses(&self, file: &str) -> Vec<u16> {
        let wanted = format!("\"GET /{file} ");
        self.access_log()
            .lines()
            .filter(|l| l.contains(&wanted))
            .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
            .collect()
    }

    pub fn pid(&self) -> u32 {
        self.nginx.id()
    }
}

fn config(dir: &Path) -> String {
    let d = dir.display();
    nginx_prelude(dir)
        + &format!(
            r#"    log_format lists '$remote_addr "$request" $status';

    server {{
        listen {LIST_PORT} default_server;
        server_name _;
        root {d}/www;
        default_type text/plain;
        access_log {d}/access.log lists;
    }}
}}
"#
        )
}
