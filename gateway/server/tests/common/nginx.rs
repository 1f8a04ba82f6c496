//! A real nginx (Debian's package, installed by `.ci/run`) as an upstream: it normalises paths
//! the way a production upstream does (merges slashes, resolves dot segments, decodes escapes),
//! which is what makes a gateway that checks one path and forwards another exploitable.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{ChildGuard, TempDir, wait_until};

/// An nginx serving `server_body` (its `location` blocks) on 127.0.0.1, in its own temp dir.
pub struct Nginx {
    pub port: u16,
    _child: ChildGuard,
    dir: TempDir,
}

fn nginx_binary() -> PathBuf {
    for candidate in ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"] {
        if std::path::Path::new(candidate).exists() {
            return candidate.into();
        }
    }
    panic!("nginx is not installed (`.ci/run` installs it: apt-get install nginx)");
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Nginx {
    pub fn start(server_body: &str) -> Self {
        Self::start_listen("", server_body)
    }

    /// An nginx speaking TLS with this certificate.
    pub fn start_tls(cert: &std::path::Path, key: &std::path::Path, server_body: &str) -> Self {
        let tls = format!(
            "ssl_certificate {}; ssl_certificate_key {};",
            cert.display(),
            key.display()
        );
        Self::start_listen(&tls, server_body)
    }

    fn start_listen(tls: &str, server_body: &str) -> Self {
        let dir = TempDir::new("nginx");
        let d = dir.path().display().to_string();
        std::fs::create_dir_all(dir.path().join("tmp")).unwrap();
        let ssl = if tls.is_empty() { "" } else { " ssl" };
        for _ in 0..5 {
            let port = free_port();
            let conf = format!(
                "daemon off; master_process off; worker_processes 1; pid {d}/nginx.pid;\n\
                 error_log {d}/error.log warn;\n\
                 events {{ worker_connections 1024; }}\n\
                 http {{\n\
                   log_format normalised '$uri'; access_log {d}/access.log normalised;\n\
                   client_body_temp_path {d}/tmp; proxy_temp_path {d}/tmp; fastcgi_temp_path {d}/tmp;\n\
                   uwsgi_temp_path {d}/tmp; scgi_temp_path {d}/tmp;\n\
                   keepalive_requests 100000;\n\
                   server {{ listen 127.0.0.1:{port}{ssl}; {tls} default_type text/plain;\n{server_body}\n }}\n\
                 }}\n"
            );
            let path = dir.path().join("nginx.conf");
            std::fs::write(&path, conf).unwrap();
            let child = Command::new(nginx_binary())
                .arg("-c")
                .arg(&path)
                .arg("-p")
                .arg(dir.path())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(dir.path().join("stderr.log")).unwrap())
                .spawn()
                .unwrap();
            let mut child = ChildGuard(Some(child));
            let up = wait_until(Duration::from_secs(5), || {
                std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            });
            if up {
                return Self {
                    port,
                    _child: child,
                    dir,
                };
            }
            // The port was taken meanwhile: try another.
            let _ = child.wait_exit(Duration::from_millis(100));
        }
        panic!(
            "nginx did not start: {}{}\n{}",
            std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default(),
            std::fs::read_to_string(dir.path().join("stderr.log")).unwrap_or_default(),
            std::fs::read_to_string(dir.path().join("nginx.conf")).unwrap_or_default()
        );
    }

    /// The URIs nginx served, normalised as nginx saw them (`$uri`), from its access log.
    pub fn served_uris(&self) -> Vec<String> {
        let log = std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default();
        log.lines().map(str::to_owned).collect()
    }
}
