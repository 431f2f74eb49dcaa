//! No allocation per message: after warm-up, N sends and N receives (into the caller's
//! buffer) allocate nothing. A counting global allocator counts this thread's calls.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    static COUNT: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = COUNT.try_with(|c| c.set(c.get() + 1));
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = COUNT.try_with(|c| c.set(c.get() + 1));
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn allocations() -> u64 {
    COUNT.with(|c| c.get())
}

#[test]
fn send_and_recv_do_not_allocate_after_warm_up() {
    let name = format!("/atbus-bench-noalloc-{}", std::process::id());
    let _ = atbus::Channel::unlink(&name);
    let ch = atbus::Channel::create(&name, 4 << 20, &atbus::Config::default()).unwrap();
    let writer = ch.writer();
    let mut reader = ch.reader().unwrap();
    let mut buf = vec![0u8; 20_000];
    let sizes = [8usize, 64, 100, 1024, 2048, 5000, 16384];
    let msgs: Vec<Vec<u8>> = sizes.iter().map(|&n| vec![n as u8; n]).collect();
    let mut round = |n: usize| {
        for i in 0..n {
            let m = &msgs[i % msgs.len()];
            writer.try_send(m).unwrap();
            let got = reader.try_recv(&mut buf).unwrap();
            assert_eq!(got, m.len());
        }
    };
    // The counter works: an allocation on this thread is seen.
    let probe = allocations();
    std::hint::black_box(vec![1u8; 100]);
    assert!(allocations() > probe);
    round(10_000); // warm-up: wraps the ring several times
    let before = allocations();
    round(100_000);
    let during = allocations() - before;
    drop(reader);
    atbus::Channel::unlink(&name).unwrap();
    assert_eq!(during, 0, "{during} allocations in 100000 send+recv pairs");
}
