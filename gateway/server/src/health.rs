//! Active HTTP health checks: one node thread probes every target of every backend whose
//! `health_check` is enabled, off the request path, and publishes verdicts that each core applies
//! to its balancers on its next tick. An unhealthy target is skipped by every balancing policy;
//! a target that answers again is put back (its circuit breaker closed).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gateway_model::entity::HealthCheck;

use crate::shared::NodeShared;
pub use crate::shared::Verdicts;

/// Whether a status is healthy for this check: listed in `healthyStatuses` (or 2xx/3xx when the
/// list is empty) and not listed in `unhealthyStatuses`.
pub fn healthy_status(check: &HealthCheck, status: u16) -> bool {
    let healthy = if check.healthy_statuses.is_empty() {
        (200..400).contains(&status)
    } else {
        check.healthy_statuses.contains(&status)
    };
    healthy && !check.unhealthy_statuses.contains(&status)
}

/// The request path of a check: the URL's path when `url` is an absolute URL.
fn check_path(url: &str) -> &str {
    match url.find("://") {
        Some(i) => {
            let rest = url.get(i + 3..).unwrap_or_default();
            rest.find('/').and_then(|j| rest.get(j..)).unwrap_or("/")
        }
        None => url,
    }
}

/// One probe: `GET path` with `Connection: close` (over TLS, verified, for a `tls: true`
/// target); healthy when the status line arrives in time with a healthy status.
pub fn probe(
    addr: SocketAddr,
    host: &str,
    check: &HealthCheck,
    tls: Option<&crate::tls::client::UpstreamTls>,
) -> bool {
    let timeout = Duration::from_millis(check.timeout.max(1));
    let Ok(stream) = TcpStream::connect_timeout(&addr, timeout) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(timeout));
    let _ = stream.set_write_timeout(Some(timeout));
    let request = format!(
        "GET {} HTTP/1.1\r\nhost: {host}\r\nuser-agent: tollgate-health-check\r\nconnection: close\r\n\r\n",
        check_path(&check.url)
    );
    match tls {
        None => exchange(stream, &request, check, timeout),
        Some(tls) => {
            let Ok(conn) =
                rustls::ClientConnection::new(tls.config.clone(), tls.server_name.clone())
            else {
                return false;
            };
            exchange(
                rustls::StreamOwned::new(conn, stream),
                &request,
                check,
                timeout,
            )
        }
    }
}

fn exchange(
    mut stream: impl Read + Write,
    request: &str,
    check: &HealthCheck,
    timeout: Duration,
) -> bool {
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    let mut len = 0;
    let deadline = Instant::now() + timeout;
    while len < 12 && Instant::now() < deadline {
        match stream.read(buf.get_mut(len..).unwrap_or_default()) {
            Ok(0) | Err(_) => break,
            Ok(n) => len += n,
        }
    }
    let line = buf.get(..len).unwrap_or_default();
    let status = line
        .strip_prefix(b"HTTP/1.")
        .and_then(|r| r.get(2..5))
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| s.parse::<u16>().ok());
    status.is_some_and(|s| healthy_status(check, s))
}

/// Runs the checks until shutdown.
pub fn spawn(shared: Arc<NodeShared>) -> Option<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("tollgate-health".to_owned())
        .spawn(move || {
            let mut next_due: HashMap<(Box<str>, usize), Instant> = HashMap::new();
            while !shared.is_shutting_down() {
                std::thread::sleep(Duration::from_millis(50));
                let snapshot = shared.current();
                let now = Instant::now();
                let mut verdicts = Verdicts::new();
                for backend in &snapshot.backends {
                    let Some(check) = backend.spec.health_check.as_ref().filter(|c| c.enabled)
                    else {
                        continue;
                    };
                    for (i, target) in backend.targets.iter().enumerate() {
                        let key = (backend.id.clone(), i);
                        if next_due.get(&key).is_some_and(|due| *due > now) {
                            continue;
                        }
                        next_due.insert(
                            key.clone(),
                            now + Duration::from_millis(check.interval.max(1)),
                        );
                        let ok = target.addr.is_some_and(|a| {
                            probe(a, &target.host_header, check, target.tls.as_deref())
                        });
                        verdicts.insert(key, ok);
                    }
                }
                if !verdicts.is_empty() {
                    shared.record_health(verdicts);
                }
            }
        })
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(healthy: &[u16], unhealthy: &[u16]) -> HealthCheck {
        HealthCheck {
            enabled: true,
            healthy_statuses: healthy.to_vec(),
            unhealthy_statuses: unhealthy.to_vec(),
            ..HealthCheck::default()
        }
    }

    #[test]
    fn statuses() {
        assert!(healthy_status(&check(&[], &[]), 204));
        assert!(healthy_status(&check(&[], &[]), 302));
        assert!(!healthy_status(&check(&[], &[]), 500));
        assert!(!healthy_status(&check(&[], &[200]), 200));
        assert!(healthy_status(&check(&[503], &[]), 503));
        assert!(!healthy_status(&check(&[503], &[]), 200));
    }

    #[test]
    fn paths() {
        assert_eq!(check_path("/health"), "/health");
        assert_eq!(check_path("http://svc:8080/status?x=1"), "/status?x=1");
        assert_eq!(check_path("https://svc"), "/");
    }

    #[test]
    fn probe_against_real_sockets() {
        use std::net::TcpListener;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            for (i, conn) in listener.incoming().take(2).enumerate() {
                let mut conn = conn.unwrap();
                let mut buf = [0u8; 1024];
                let _ = conn.read(&mut buf);
                let status = if i == 0 {
                    "200 OK"
                } else {
                    "503 Service Unavailable"
                };
                let _ = conn.write_all(
                    format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n").as_bytes(),
                );
            }
        });
        let c = check(&[], &[]);
        assert!(probe(addr, "svc", &c, None));
        assert!(!probe(addr, "svc", &c, None));
        server.join().unwrap();
        // Nothing listens any more.
        assert!(!probe(addr, "svc", &c, None));
    }
}
