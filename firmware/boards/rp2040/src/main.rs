//! Tributary firmware for the Raspberry Pi Pico (RP2040): an SHT3x on I2C0
//! feeds the application, UART0 is the link to the gateway.
//!
//! Wiring (docs/firmware.md):
//! - SHT3x: SDA → GP4 (pin 6), SCL → GP5 (pin 7), VDD → 3V3 (pin 36),
//!   GND → GND, ADDR → GND (address 0x44). Breakouts carry pull-ups; the
//!   internal ones are enabled too.
//! - Link: GP0 = UART0 TX (pin 1) → gateway RX, GP1 = UART0 RX (pin 2) ←
//!   gateway TX, GND ↔ GND; 115200 8N1, 3.3 V levels (a Raspberry Pi's
//!   GPIO UART or any 3.3 V USB-serial adapter).
//!
//! The device id is the flash chip's 64-bit unique id; the boot number is
//! drawn from the ring oscillator's random bit at every boot.
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use embassy_rp::clocks::RoscRng;
use embassy_rp::flash::{Blocking, Flash};
use embassy_rp::i2c::{self, I2c};
use embassy_rp::uart::{self, Uart};
use embassy_time::{Delay, Instant};
use embedded_hal_nb::serial::Read as _;
use tributary_core::codec::v1::DeviceMessage;
use tributary_core::ids::{DeviceId, SensorId};
use tributary_firmware::app::{App, Config};
use tributary_firmware::drivers::sht3x::{ADDRESS_LOW, Sht3x};
use tributary_firmware::link::Inbox;
use tributary_firmware::uplink::{MAX_FRAME, encode_frame};

/// The Pico's flash: 2 MiB.
const FLASH_SIZE: usize = 2 * 1024 * 1024;
/// Sensor ids: temperature in °C and relative humidity in %. Configure
/// per device in a fleet (they must be unique within it).
const SENSORS: [SensorId; 2] = [SensorId(2_040_001), SensorId(2_040_002)];
/// Sampling period: one SHT3x measurement a second.
const PERIOD_MS: u64 = 1_000;
/// Windows buffered while the gateway is away: 256 one-second windows of
/// two sensors ≈ 2 minutes at full resolution, merged beyond (≈ 22 KiB).
const RING: usize = 256;
/// Firmware version for the hello: 0.1.
const FIRMWARE: u16 = 0x0001;

#[entry]
fn main() -> ! {
    let p = embassy_rp::init(Default::default());

    let mut flash = Flash::<_, Blocking, FLASH_SIZE>::new_blocking(p.FLASH);
    let mut uid = [0u8; 8];
    let device = match flash.blocking_unique_id(&mut uid) {
        Ok(()) => DeviceId(u64::from_be_bytes(uid)),
        Err(_) => DeviceId(0x7472_6962_0000_2040),
    };
    let boot = RoscRng.next_u32();

    let mut link_config = uart::Config::default();
    link_config.baudrate = 115_200;
    let link = Uart::new_blocking(p.UART0, p.PIN_0, p.PIN_1, link_config);
    let (mut tx, mut rx) = link.split();
    let bus = I2c::new_blocking(p.I2C0, p.PIN_5, p.PIN_4, i2c::Config::default());
    let mut sensor = Sht3x::new(bus, ADDRESS_LOW);

    let (Some(app), Some(frame)) = (make_app(device, boot), make_frame_buffer()) else {
        halt()
    };
    let mut emit = |msg: &DeviceMessage| {
        if let Ok(n) = encode_frame(msg, frame)
            && let Some(bytes) = frame.get(..n)
        {
            // A UART error here is a framing problem of the other side's
            // line; the gateway resynchronises and the ack protocol resends.
            let _ = tx.blocking_write(bytes);
        }
    };
    let mut inbox = Inbox::new();
    let millis = || Instant::now().as_millis();

    let _ = sensor.soft_reset(&mut Delay);
    app.start(millis(), &mut emit);
    let mut next_sample = millis();
    loop {
        let now = millis();
        // The RX FIFO holds 32 bytes; the loop comes by far more often
        // than the link can fill it.
        while let Ok(byte) = rx.read() {
            if let Some(msg) = inbox.feed(byte) {
                app.on_message(&msg, now, &mut emit);
            }
        }
        if now >= next_sample {
            while next_sample <= now {
                next_sample += PERIOD_MS;
            }
            if let Ok(m) = sensor.measure(&mut Delay) {
                let _ = app.record(0, now, m.millicelsius as f32 / 1_000.0);
                let _ = app.record(1, now, m.millipercent as f32 / 1_000.0);
            }
        }
        app.poll(now, &mut emit);
    }
}

// The application state (~21 KiB) and the frame buffer live in statics,
// so that the size report's data + bss shows the RAM they take. Each is
// built in its own (not inlined) function: the temporary the value is built
// in then lives in a stack frame that is gone before the main loop runs.

#[inline(never)]
fn make_app(device: DeviceId, boot: u32) -> Option<&'static mut App<2, RING>> {
    cortex_m::singleton!(: App<2, RING> = App::new(Config::new(device, FIRMWARE), boot, SENSORS))
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
