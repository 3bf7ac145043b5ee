use super::*;

const LIMITS: Limits = Limits {
    max_args: 8,
    max_command: 64,
};

fn args_of(buf: &[u8]) -> (usize, Vec<Vec<u8>>) {
    match parse(buf, LIMITS) {
        Parsed::Command { consumed, args } => {
            (consumed, args.into_iter().map(|a| a.into_owned()).collect())
        }
        other => panic!("{other:?}"),
    }
}

fn words(list: &[&str]) -> Vec<Vec<u8>> {
    list.iter().map(|w| w.as_bytes().to_vec()).collect()
}

fn reason_of(buf: &[u8]) -> String {
    match parse(buf, LIMITS) {
        Parsed::Invalid { reason } => reason.into_owned(),
        other => panic!("expected a protocol error, got {other:?}"),
    }
}

#[test]
fn an_array_of_bulk_strings_is_one_command() {
    let frame = b"*3\r\n$7\r\nPUBLISH\r\n$4\r\nnews\r\n$5\r\nhello\r\n";
    assert_eq!(
        args_of(frame),
        (frame.len(), words(&["PUBLISH", "news", "hello"]))
    );
}

#[test]
fn bulk_strings_are_binary_safe() {
    let frame = b"*2\r\n$4\r\nPING\r\n$4\r\na\r\nb\r\n";
    assert_eq!(args_of(frame).1[1], b"a\r\nb");
    let frame = b"*1\r\n$0\r\n\r\n";
    assert_eq!(args_of(frame), (frame.len(), vec![Vec::new()]));
}

#[test]
fn every_prefix_of_a_frame_is_partial_and_only_the_whole_is_a_command() {
    let frame = b"*2\r\n$4\r\nPING\r\n$2\r\nhi\r\n";
    for cut in 0..frame.len() {
        match parse(&frame[..cut], LIMITS) {
            Parsed::Partial { wants } => assert!(wants > cut, "cut {cut}: wants {wants}"),
            other => panic!("cut {cut}: {other:?}"),
        }
    }
    assert_eq!(args_of(frame).0, frame.len());
}

#[test]
fn a_bulk_string_announces_how_much_it_needs() {
    assert_eq!(
        parse(b"*1\r\n$10\r\nab", LIMITS),
        Parsed::Partial { wants: 9 + 10 + 2 }
    );
}

#[test]
fn pipelined_commands_are_read_one_at_a_time() {
    let two = b"*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nQUIT\r\n";
    let (consumed, args) = args_of(two);
    assert_eq!(args, words(&["PING"]));
    assert_eq!(args_of(&two[consumed..]), (14, words(&["QUIT"])));
}

#[test]
fn empty_arrays_and_blank_lines_are_commands_without_arguments() {
    assert_eq!(args_of(b"*0\r\n"), (4, vec![]));
    assert_eq!(args_of(b"*-1\r\n"), (5, vec![]));
    assert_eq!(args_of(b"\r\n"), (2, vec![]));
    assert_eq!(args_of(b"   \n"), (4, vec![]));
}

#[test]
fn inline_commands_split_on_blanks_and_end_at_a_newline() {
    assert_eq!(args_of(b"PING\r\n"), (6, words(&["PING"])));
    assert_eq!(
        args_of(b"publish  news\thello\n"),
        (20, words(&["publish", "news", "hello"]))
    );
    assert_eq!(
        parse(b"PUBLISH news", LIMITS),
        Parsed::Partial { wants: 13 }
    );
}

#[test]
fn inline_quotes_follow_redis() {
    assert_eq!(
        args_of(b"PUBLISH c \"a b\\n\\x41\\\"\"\r\n").1,
        vec![b"PUBLISH".to_vec(), b"c".to_vec(), b"a b\nA\"".to_vec()]
    );
    assert_eq!(
        args_of(b"PUBLISH c '{\"x\": 1}' 'it\\'s'\n").1,
        words(&["PUBLISH", "c", "{\"x\": 1}", "it's"])
    );
    assert_eq!(args_of(b"PING \"\"\n").1, words(&["PING", ""]));
    assert_eq!(
        reason_of(b"PUBLISH c \"open\n"),
        "unbalanced quotes in request"
    );
    assert_eq!(
        reason_of(b"PUBLISH c 'x'y\n"),
        "unbalanced quotes in request"
    );
}

#[test]
fn bad_headers_are_protocol_errors() {
    assert_eq!(reason_of(b"*x\r\n"), "invalid multibulk length");
    assert_eq!(reason_of(b"*+1\r\n"), "invalid multibulk length");
    assert_eq!(reason_of(b"*9\r\n"), "invalid multibulk length");
    assert_eq!(reason_of(b"*1\r\n:4\r\n"), "expected '$', got ':'");
    assert_eq!(reason_of(b"*1\r\n$-1\r\n"), "invalid bulk length");
    assert_eq!(reason_of(b"*1\r\n$abc\r\n"), "invalid bulk length");
    assert_eq!(
        reason_of(b"*1\r\n$2\r\nabcd"),
        "bulk string not followed by CRLF"
    );
}

#[test]
fn sizes_past_the_limits_are_refused_before_they_are_buffered() {
    // A huge bulk length is refused from its header, whatever follows.
    assert_eq!(
        reason_of(b"*3\r\n$7\r\nPUBLISH\r\n$1\r\nc\r\n$999999999999\r\n"),
        "invalid bulk length"
    );
    assert_eq!(reason_of(b"*1\r\n$65\r\n"), "invalid bulk length");
    // Arguments that fit alone but not together.
    assert_eq!(
        reason_of(b"*2\r\n$40\r\n0123456789012345678901234567890123456789\r\n$40\r\n"),
        "command larger than --max-message-size"
    );
    // A count line that never ends, and an inline line that never ends.
    assert_eq!(
        reason_of(&[b"*1".as_slice(), &[b'1'; 40]].concat()),
        "too big mbulk count string"
    );
    assert_eq!(
        reason_of(&[b"*1\r\n$1".as_slice(), &[b'1'; 40]].concat()),
        "too big bulk count string"
    );
    assert_eq!(reason_of(&[b'a'; 65]), "too big inline request");
    assert_eq!(
        reason_of(&[[b'a'; 65].as_slice(), b"\n"].concat()),
        "too big inline request"
    );
    // Exactly the cap is fine.
    let at_cap = [b"*1\r\n$64\r\n".as_slice(), &[b'z'; 64], b"\r\n"].concat();
    assert_eq!(args_of(&at_cap).1[0].len(), 64);
}

#[test]
fn an_inline_line_with_too_many_words_is_refused() {
    assert_eq!(
        reason_of(b"a b c d e f g h i\n"),
        "invalid multibulk length"
    );
}
