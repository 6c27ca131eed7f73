//! Tributary firmware for QEMU's `mps2-an386` (Cortex-M4F): the real
//! application and SHT3x driver over a simulated sensor bus.
//!
//! - UART0 (CMSDK, 0x4000_4000) is the link to the gateway: frames out,
//!   acks and time syncs in (polled; the RX holding register is one byte).
//! - UART1 (0x4000_5000) is a debug console: one `stats …` line a second
//!   with the application's counters (the e2e test reads it).
//! - SysTick ticks every millisecond (25 MHz core clock).
//! - The boot number comes from the host clock over semihosting, so run
//!   QEMU with `-semihosting-config enable=on,target=native`.
//!
//! Run: `qemu-system-arm -cpu cortex-m4 -machine mps2-an386 -nographic
//! -display none -monitor none -semihosting-config enable=on,target=native
//! -serial pty -serial file:console.log -kernel tributary-fw-mps2`.
#![no_std]
#![no_main]

use core::cell::Cell;
use core::fmt::Write as _;

use cortex_m::peripheral::syst::SystClkSource;
use cortex_m_rt::{entry, exception};
use critical_section::Mutex;
use embedded_hal::delay::DelayNs;
use tributary_core::codec::v1::DeviceMessage;
use tributary_core::ids::{DeviceId, SensorId};
use tributary_firmware::app::{App, Config};
use tributary_firmware::drivers::sht3x::{ADDRESS_LOW, Sht3x};
use tributary_firmware::link::Inbox;
use tributary_firmware::sim::FakeSht3x;
use tributary_firmware::uplink::{MAX_FRAME, encode_frame};

/// Core clock of the AN386 image in QEMU.
const CORE_HZ: u32 = 25_000_000;
/// This device (a fixed id: QEMU has no unique id register).
const DEVICE: DeviceId = DeviceId(0x7472_6962_0000_0386);
/// Sensor ids: temperature in °C and relative humidity in %.
const SENSORS: [SensorId; 2] = [SensorId(386_001), SensorId(386_002)];
/// Sampling period.
const PERIOD_MS: u64 = 100;
/// Ring size: windows buffered while the gateway is away (80 B each).
/// Small, so that an outage of ~15 s (2 windows a second) already makes
/// the ring merge: the e2e test sees it.
const RING: usize = 32;
/// Firmware version for the hello: 0.1.
const FIRMWARE: u16 = 0x0001;

static MILLIS: Mutex<Cell<u64>> = Mutex::new(Cell::new(0));

#[exception]
fn SysTick() {
    critical_section::with(|cs| {
        let c = MILLIS.borrow(cs);
        c.set(c.get() + 1);
    });
}

fn millis() -> u64 {
    critical_section::with(|cs| MILLIS.borrow(cs).get())
}

/// A CMSDK APB UART.
struct Uart(usize);

impl Uart {
    const DATA: usize = 0x00;
    const STATE: usize = 0x04;
    const CTRL: usize = 0x08;
    const BAUDDIV: usize = 0x10;
    const TX_FULL: u32 = 1;
    const RX_FULL: u32 = 2;

    fn reg(&self, offset: usize) -> *mut u32 {
        (self.0 + offset) as *mut u32
    }

    fn init(base: usize) -> Uart {
        let u = Uart(base);
        // SAFETY: fixed MMIO registers of the CMSDK UART on this machine;
        // nothing else touches them.
        unsafe {
            u.reg(Self::BAUDDIV).write_volatile(16);
            u.reg(Self::CTRL).write_volatile(0b11); // TX_EN | RX_EN
        }
        u
    }

    fn write(&self, bytes: &[u8]) {
        for &b in bytes {
            // SAFETY: as in `init`.
            unsafe {
                while self.reg(Self::STATE).read_volatile() & Self::TX_FULL != 0 {}
                self.reg(Self::DATA).write_volatile(u32::from(b));
            }
        }
    }

    fn read(&self) -> Option<u8> {
        // SAFETY: as in `init`.
        unsafe {
            if self.reg(Self::STATE).read_volatile() & Self::RX_FULL == 0 {
                return None;
            }
            Some(self.reg(Self::DATA).read_volatile() as u8)
        }
    }
}

impl core::fmt::Write for Uart {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.write(s.as_bytes());
        Ok(())
    }
}

/// Busy-wait delay for the driver (cycle-counted at the core clock).
struct Delay;

impl DelayNs for Delay {
    fn delay_ns(&mut self, ns: u32) {
        cortex_m::asm::delay((u64::from(ns) * u64::from(CORE_HZ) / 1_000_000_000) as u32);
    }
}

/// What free stack is painted with, to find the stack's high-water mark.
const PAINT: u32 = 0x5354_4b21;

unsafe extern "C" {
    // cortex-m-rt's linker script: the end of statics (the stack may grow
    // down to here) and the initial stack pointer (the end of RAM).
    static _stack_end: u32;
    static _stack_start: u32;
}

fn stack_bounds() -> (usize, usize) {
    (
        core::ptr::addr_of!(_stack_end) as usize,
        core::ptr::addr_of!(_stack_start) as usize,
    )
}

/// Fills the unused stack with [`PAINT`]. Must run first in `main`, with
/// interrupts not yet enabled: it writes below the stack pointer.
#[inline(always)]
fn paint_stack() {
    let (end, _) = stack_bounds();
    // Leave a margin below the current frame for this loop's own calls.
    let sp = cortex_m::register::msp::read() as usize - 64;
    let mut p = end;
    while p < sp {
        // SAFETY: [end, sp) is RAM nobody uses yet (statics end at `end`,
        // live stack starts above `sp`, no interrupt is enabled).
        unsafe { (p as *mut u32).write_volatile(PAINT) };
        p += 4;
    }
}

/// Bytes of stack used so far (the deepest the stack has ever been).
fn stack_used() -> usize {
    let (end, start) = stack_bounds();
    let mut p = end;
    // SAFETY: reads of RAM inside the stack region.
    while p < start && unsafe { (p as *const u32).read_volatile() } == PAINT {
        p += 4;
    }
    start - p
}

#[entry]
fn main() -> ! {
    paint_stack();
    let Some(mut core) = cortex_m::Peripherals::take() else {
        halt()
    };
    core.SYST.set_clock_source(SystClkSource::Core);
    core.SYST.set_reload(CORE_HZ / 1_000 - 1);
    core.SYST.clear_current();
    core.SYST.enable_counter();
    core.SYST.enable_interrupt();

    let link = Uart::init(0x4000_4000);
    let mut console = Uart::init(0x4000_5000);
    // SAFETY: semihosting TIME (0x11) has no argument and returns seconds
    // since the epoch; QEMU must run with semihosting enabled.
    let boot = unsafe { cortex_m_semihosting::syscall!(TIME) } as u32;
    let _ = writeln!(console, "boot {boot} device {DEVICE}");

    let (Some(app), Some(frame)) = (make_app(boot), make_frame_buffer()) else {
        halt()
    };
    let mut sensor = Sht3x::new(FakeSht3x::new(ADDRESS_LOW), ADDRESS_LOW);
    let mut inbox = Inbox::new();
    let mut sensor_errors = 0u32;
    let mut emit = |msg: &DeviceMessage| {
        if let Ok(n) = encode_frame(msg, frame)
            && let Some(bytes) = frame.get(..n)
        {
            link.write(bytes);
        }
    };

    app.start(millis(), &mut emit);
    let mut next_sample = millis();
    let mut next_stats = next_sample + 1_000;
    loop {
        let now = millis();
        while let Some(byte) = link.read() {
            if let Some(msg) = inbox.feed(byte) {
                app.on_message(&msg, now, &mut emit);
            }
        }
        if now >= next_sample {
            // Missed periods (the host was busy) are skipped, not caught
            // up in a burst: at most one sample per period.
            while next_sample <= now {
                next_sample += PERIOD_MS;
            }
            match sensor.measure(&mut Delay) {
                Ok(m) => {
                    let _ = app.record(0, now, m.millicelsius as f32 / 1_000.0);
                    let _ = app.record(1, now, m.millipercent as f32 / 1_000.0);
                }
                Err(_) => sensor_errors = sensor_errors.wrapping_add(1),
            }
        }
        app.poll(now, &mut emit);
        if now >= next_stats {
            next_stats += 1_000;
            let s = app.stats();
            let _ = writeln!(
                console,
                "stats uptime_ms={now} stack={} samples={} unsynced={} windows={} sent={} resent={} acked_windows={} acked_samples={} merges={} dropped_windows={} dropped_samples={} hellos={} alerts={} buffered={} in_flight={} sensor_errors={sensor_errors} bad_frames={}",
                stack_used(),
                s.samples,
                s.unsynced_samples,
                s.windows,
                s.frames_sent,
                s.frames_resent,
                s.acked_windows,
                s.acked_samples,
                s.merges,
                s.dropped_windows,
                s.dropped_samples,
                s.hellos,
                s.alerts,
                app.buffered(),
                app.in_flight(),
                inbox.bad_frames + inbox.bad_messages,
            );
        }
        // Sleep until the next tick (or anything else) wakes the core.
        cortex_m::asm::wfi();
    }
}

// The application state and the frame buffer live in statics rather than
// on the stack, so that the size report's data + bss shows the RAM they
// take. Each is built in its own (not inlined) function: the temporary the
// value is built in then lives in a stack frame that is gone before the
// main loop runs, instead of in `main`'s frame for ever.

#[inline(never)]
fn make_app(boot: u32) -> Option<&'static mut App<2, RING>> {
    cortex_m::singleton!(: App<2, RING> = App::new(Config::new(DEVICE, FIRMWARE), boot, SENSORS))
}

#[inline(never)]
fn make_frame_buffer() -> Option<&'static mut [u8; MAX_FRAME]> {
    cortex_m::singleton!(: [u8; MAX_FRAME] = [0u8; MAX_FRAME])
}

fn halt() -> ! {
    loop {
        cortex_m::asm::wfi();
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    halt()
}
