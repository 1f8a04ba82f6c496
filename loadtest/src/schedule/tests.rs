use super::*;

fn times(s: &Schedule, every: u64, offset: u64) -> Vec<f64> {
    let mut cursor = 0;
    let mut out = Vec::new();
    let mut n = offset;
    while let Some(t) = s.time_of(n, &mut cursor) {
        out.push(t.as_secs_f64());
        n += every;
    }
    out
}

#[test]
fn steady_rate_is_evenly_spaced() {
    let s = Schedule::steady(1000.0, Some(Duration::from_secs(2)));
    let all = times(&s, 1, 0);
    assert_eq!(all.len(), 2000);
    assert!((all[1] - 0.001).abs() < 1e-9);
    assert!((all[1999] - 1.999).abs() < 1e-9);
    // Connection 3 of 10 sends requests 3, 13, 23, … every 10 ms.
    let c3 = times(&s, 10, 3);
    assert_eq!(c3.len(), 200);
    assert!((c3[0] - 0.003).abs() < 1e-9 && (c3[1] - 0.013).abs() < 1e-9);
}

#[test]
fn open_ended_steady_never_ends() {
    let s = Schedule::steady(10.0, None);
    let mut cursor = 0;
    assert_eq!(
        s.time_of(1_000_000, &mut cursor),
        Some(Duration::from_secs(100_000))
    );
    assert!(s.duration().is_none());
}

#[test]
fn ramp_sends_the_integral() {
    // 0 → 1000 over 10 s: 5000 requests, the rate at t is 100·t.
    let s = Schedule::from_stages(
        Duration::ZERO,
        0.0,
        &[Stage::Ramp {
            from: 0.0,
            to: 1000.0,
            duration: Duration::from_secs(10),
        }],
    );
    let all = times(&s, 1, 0);
    assert_eq!(all.len(), 5000);
    // Requests due by t = 5 s: 50·25 = 1250.
    let by5 = all.iter().filter(|&&t| t < 5.0).count();
    assert!((1249..=1251).contains(&by5), "{by5}");
    assert!(all.windows(2).all(|w| w[0] <= w[1]));
    // Ramping down works too.
    let down = Schedule::from_stages(
        Duration::ZERO,
        0.0,
        &[Stage::Ramp {
            from: 1000.0,
            to: 0.0,
            duration: Duration::from_secs(10),
        }],
    );
    let all = times(&down, 1, 0);
    assert_eq!(all.len(), 5000);
    let by5 = all.iter().filter(|&&t| t < 5.0).count();
    assert!((3749..=3751).contains(&by5), "{by5}");
}

#[test]
fn warmup_spike_and_stages_chain() {
    let s = Schedule::from_stages(
        Duration::from_secs(1),
        100.0,
        &[
            Stage::Steady {
                rate: 200.0,
                duration: Duration::from_secs(2),
            },
            Stage::Spike {
                rate: 1000.0,
                duration: Duration::from_secs(1),
                after: Duration::from_secs(1),
            },
        ],
    );
    assert_eq!(s.duration(), Some(Duration::from_secs(5)));
    assert!((s.total_requests() - (100.0 + 400.0 + 1000.0 + 200.0)).abs() < 1e-9);
    assert!((s.peak_rate() - 1000.0).abs() < 1e-9);
    let all = times(&s, 1, 0);
    assert_eq!(all.len(), 1700);
    let in_spike = all.iter().filter(|&&t| (3.0..4.0).contains(&t)).count();
    assert_eq!(in_spike, 1000);
}
