//! What preparing an event allocates, counted by the allocator itself: the most bytes held at once while
//! one event is parsed and prepared, against the size of its text. A property costs about 70 bytes beside
//! its text (its path and value in the flattened form), so the shapes have names and values of ordinary
//! length; an event of thousands of one-letter properties costs more per byte of text (at most ~80 bytes a
//! property, within the 900 KB an event may be). The counts are per thread, so tests
//! running beside each other do not mix. This is what a write costs per event whatever the allocator
//! later does with freed memory (the resident figure, from outside, is in `tests/it/untrusted_writes.rs`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use serde_json::{Value, json};

use crate::event::{EventContext, prepare_event_text};

struct CountingAllocator;

thread_local! {
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn grow(bytes: usize) {
    // `try_with`: the thread's counters may already be gone while it exits.
    let _ = LIVE.try_with(|live| {
        live.set(live.get() + bytes);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(live.get())));
    });
}

fn shrink(bytes: usize) {
    let _ = LIVE.try_with(|live| live.set(live.get().saturating_sub(bytes)));
}

// SAFETY: every call is forwarded to the system allocator unchanged; only counters are kept beside it.
// The workspace's one allowed unsafe code: a `GlobalAlloc` cannot be implemented without it.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grow(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        shrink(layout.size());
        unsafe { System.dealloc(pointer, layout) }
    }
    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // A moving reallocation holds both blocks for a moment: count the new one before the old goes.
        grow(new_size);
        shrink(layout.size());
        unsafe { System.realloc(pointer, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// The most bytes this thread held at once while `work` ran, above what it held before.
fn peak_while(work: impl FnOnce()) -> usize {
    let before = LIVE.with(Cell::get);
    PEAK.with(|peak| peak.set(before));
    work();
    PEAK.with(Cell::get) - before
}

fn context() -> EventContext {
    EventContext {
        received_at: "2026-12-06T12:00:00Z".parse().expect("a valid instant"),
        client_ip: Some("127.0.0.1".into()),
        user_agent: None,
        uniqueness_scope: None,
        autofill: None,
    }
}

#[test]
fn preparing_an_event_holds_at_most_ten_times_its_text() {
    let nested = {
        let mut event = json!({"leaf": 1});
        for level in 0..90 {
            event = json!({format!("l{level}"): event, "s": "x".repeat(150)});
        }
        event
    };
    let shapes: Vec<(&str, Value)> = vec![
        ("440,000 small numbers", json!({"list": vec![1; 440_000]})),
        (
            "a list mixing kinds",
            json!({"list": (0..100_000).map(|n| if n % 2 == 0 { json!(n) } else { json!("s") }).collect::<Vec<_>>()}),
        ),
        (
            "1,000 properties",
            Value::Object(
                (0..1_000)
                    .map(|n| (format!("property_{n}"), json!(format!("value {n}"))))
                    .collect(),
            ),
        ),
        ("90 levels of nesting", nested),
        (
            "long strings",
            json!({"a": "x".repeat(9_000), "b": vec!["y".repeat(9_000); 50]}),
        ),
        ("empty", json!({})),
    ];
    for (shape, event) in shapes {
        let text = serde_json::to_vec(&event).expect("serializes");
        drop(event);
        let mut prepared = None;
        let peak = peak_while(|| {
            prepared = Some(prepare_event_text(
                &text,
                &context(),
                &crate::addons::WithoutData,
            ));
        });
        let prepared = prepared
            .expect("ran")
            .unwrap_or_else(|error| panic!("{shape}: {error}"));
        // A small event is dominated by its fixed part (its `keen` fields, the id): judged against 1 KB.
        let judged = text.len().max(1_024);
        assert!(
            peak <= 10 * judged,
            "{shape}: {peak} bytes held at once for {} bytes of text",
            text.len()
        );
        assert!(!prepared.json.is_empty());
    }
}
