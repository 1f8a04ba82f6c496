//! Who holds a lock: a process that locks a file or directory (the journal's `LOCK`, the
//! ledger's store) writes its pid and command line into (or beside) it, and a process refused
//! the lock reads them back to name the holder in its error, instead of "locked".
//!
//! Best effort on both sides: a holder that cannot write the file still holds the lock, and a
//! stale file (its process gone) names nobody.

use std::io::{self, Write};
use std::path::Path;

/// This process, as written into a holder file: `pid\ncommand line\n`.
fn this_process() -> String {
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", std::process::id()))
        .map(|raw| command_line(&raw))
        .unwrap_or_default();
    format!("{}\n{cmdline}\n", std::process::id())
}

/// `/proc/PID/cmdline` (NUL-separated) as one line, at most 160 characters.
fn command_line(raw: &[u8]) -> String {
    let line = raw
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    if line.chars().count() > 160 {
        let cut: String = line.chars().take(157).collect();
        format!("{cut}...")
    } else {
        line
    }
}

/// Replaces `file`'s content with this process's pid and command line (the file is the lock
/// file itself, held open).
///
/// # Errors
/// When the file cannot be truncated or written.
pub fn write_into(file: &mut std::fs::File) -> io::Result<()> {
    file.set_len(0)?;
    io::Seek::seek(file, io::SeekFrom::Start(0))?;
    file.write_all(this_process().as_bytes())
}

/// Writes this process's pid and command line to `path` (a file beside what it locks).
///
/// # Errors
/// When the file cannot be written.
pub fn write(path: &Path) -> io::Result<()> {
    std::fs::write(path, this_process())
}

/// The process named in the holder file `path`, if it still runs: `process 1234 (gateway
/// --config /etc/tollgate/tollgate.toml)`, or `this process`.
#[must_use]
pub fn describe(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut lines = text.lines();
    let pid: u32 = lines.next()?.trim().parse().ok()?;
    if pid == std::process::id() {
        return Some("this process".to_owned());
    }
    // Still running? (A stale file names nobody.)
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let now = command_line(&cmdline);
    let recorded = lines.next().unwrap_or_default().trim();
    // A recycled pid runs something else: trust what runs now, but only if it looks like us.
    if !recorded.is_empty() && !now.is_empty() && now != recorded {
        return Some(format!("process {pid} ({now}), it seems"));
    }
    Some(if now.is_empty() {
        format!("process {pid}")
    } else {
        format!("process {pid} ({now})")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_file_names_this_process_and_a_stale_one_nobody() {
        let dir = std::env::temp_dir().join(format!("tollgate-holder-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("holder");
        write(&path).unwrap();
        assert_eq!(describe(&path).as_deref(), Some("this process"));
        // pid_max is at most 2^22: this pid cannot run.
        std::fs::write(&path, "99999999\nsomething\n").unwrap();
        assert_eq!(describe(&path), None);
        std::fs::write(&path, "garbage").unwrap();
        assert_eq!(describe(&path), None);
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(
            command_line(b"gateway\0--config\0x.toml\0"),
            "gateway --config x.toml"
        );
    }
}
