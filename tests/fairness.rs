//! A client that keeps its socket full is served in slices (a bounded number of
//! reads per turn, then the others' turn); across those slices nothing it sent may
//! be lost, altered or reordered.

mod common;

use common::*;
use std::io::Write;
use std::thread;

const FRAMES: usize = 192;
const FRAME_BYTES: usize = 32 * 1024;

fn masked_binary_frame(index: usize) -> Vec<u8> {
    let payload: Vec<u8> = (0..FRAME_BYTES).map(|i| (index + i) as u8).collect();
    let key = [1, 2, 3, 4];
    let mut frame = vec![0x82, 0x80 | 127];
    frame.extend_from_slice(&(FRAME_BYTES as u64).to_be_bytes());
    frame.extend_from_slice(&key);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    frame
}

#[test]
fn a_flood_larger_than_one_turn_is_echoed_completely_and_in_order() {
    let server = Server::start(&["--echo"]);
    let mut ws = server.raw("/echo");
    let mut writer = ws.stream.try_clone().unwrap();
    // 6 MiB in one go: several turns' worth of reads for the server.
    let flood = thread::spawn(move || {
        let all: Vec<u8> = (0..FRAMES).flat_map(masked_binary_frame).collect();
        writer.write_all(&all).unwrap();
    });
    for index in 0..FRAMES {
        let frame = ws.recv_frame();
        assert_eq!(frame.opcode, OP_BINARY);
        assert_eq!(frame.payload.len(), FRAME_BYTES, "frame {index}");
        assert!(
            frame
                .payload
                .iter()
                .enumerate()
                .all(|(i, &b)| b == (index + i) as u8),
            "frame {index} came back altered or out of order"
        );
    }
    flood.join().unwrap();
}
