//! Usage batches as the ledger reads them from the journal or Kafka.
//!
//! Two modes, chosen by the first byte:
//! - raw bytes: `decode` and the zero-copy `access` agree (both accept or both refuse), and a
//!   decoded batch encodes and decodes to itself;
//! - structure-aware (plain bytes rarely get past the checksum-free archive validation): a valid
//!   batch built from the input is encoded, must decode to itself, then one byte of the encoding
//!   is changed as the input says and the result decoded again: refused, or a batch that itself
//!   round-trips and is valid.
#![no_main]

use gateway_model::event::{
    RejectReason, UsageBatch, UsageCounters, UsageDecoder, UsageEntry, encode, partition_for,
};
use libfuzzer_sys::fuzz_target;

/// Reads little numbers off the input, zero once it runs out.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        let (first, rest) = self.0.split_first().map_or((0, &[][..]), |(f, r)| (*f, r));
        self.0 = rest;
        first
    }
    fn u64(&mut self) -> u64 {
        (0..8).fold(0, |n, _| (n << 8) | u64::from(self.byte()))
    }
    fn text(&mut self, max: usize) -> String {
        let len = usize::from(self.byte()) % (max + 1);
        (0..len)
            .map(|_| char::from(b'a' + self.byte() % 26))
            .collect()
    }
}

fn check(decoder: &mut UsageDecoder, bytes: &[u8]) {
    let decoded = decoder.decode(bytes);
    let accessed = decoder.access(bytes).map(|_| ());
    assert_eq!(
        decoded.is_ok(),
        accessed.is_ok(),
        "decode and access disagree: {decoded:?} / {accessed:?}"
    );
    if let Ok(batch) = decoded {
        batch.validate().expect("a decoded batch is valid");
        let again = encode(&batch).expect("a decoded batch encodes");
        assert_eq!(
            decoder.decode(&again).expect("re-encoded batch decodes"),
            batch
        );
    }
}

fn build(input: &mut Input<'_>) -> UsageBatch {
    let partitions = u32::from(input.byte() % 8) + 1;
    let partition = u32::from(input.byte()) % partitions;
    let count = usize::from(input.byte() % 8);
    let mut entries = Vec::new();
    let mut n = 0u32;
    while entries.len() < count && n < 256 {
        n += 1;
        let apikey = format!("{}{n}", input.text(6));
        if partition_for(&apikey, partitions) != partition {
            continue;
        }
        let mut counters = UsageCounters {
            admitted: input.u64() >> 8,
            bytes_in: input.u64() >> 8,
            bytes_out: input.u64() >> 8,
            ..UsageCounters::default()
        };
        counters
            .rejected
            .add(RejectReason::Throttled, u64::from(input.byte()));
        counters.status.success = u64::from(input.byte());
        let day = 20_260_101 + u32::from(input.byte() % 28);
        entries.push(UsageEntry {
            apikey,
            api: (input.byte() % 2 == 0).then(|| input.text(8)),
            route: input.text(8),
            consumer: (input.byte() % 2 == 0).then(|| input.text(8)),
            subscription: (input.byte() % 2 == 0).then(|| input.text(8)),
            day,
            month: 202_601,
            counters,
        });
    }
    let window_start_ms = 1_767_225_600_000 + i64::from(input.byte()) * 1000;
    UsageBatch {
        node: input.text(12),
        epoch: input.u64(),
        core: u16::from(input.byte()),
        partition,
        partitions,
        sequence: input.u64(),
        window_start_ms,
        window_end_ms: window_start_ms + i64::from(input.byte()),
        entries,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut decoder = UsageDecoder::new();
    if mode % 2 == 0 {
        check(&mut decoder, rest);
        return;
    }
    let mut input = Input(rest);
    let batch = build(&mut input);
    let bytes = encode(&batch).expect("a valid batch encodes");
    assert_eq!(decoder.decode(&bytes).expect("its encoding decodes"), batch);
    let mut mutated = bytes.clone();
    let at = (input.u64() as usize) % mutated.len().max(1);
    if let Some(b) = mutated.get_mut(at) {
        *b ^= input.byte().max(1);
    }
    check(&mut decoder, &mutated);
});
