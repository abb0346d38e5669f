//! The restricted pickle reader (`src/server/pickle.rs`) and the `.npy` reader: real
//! numpy pickles are rebuilt exactly; anything else is refused, never a panic.
//! The same inputs are fuzzed by `fuzz/fuzz_targets/pickle_reader.rs`.

use proptest::prelude::*;
use pyme_streaming::server::npy::{read_npy, write_npy};
use pyme_streaming::server::pickle::{read, read_array, read_protocol0, PickleError, Pickled};

/// `a.dumps()` (protocol 2) and `pickle.dumps(a, protocol=5)` of a three-row record
/// array `[('tIndex', '<i4'), ('fitResults', [('x0', '<f4'), ('y0', '<f4')]),
/// ('v', '<f4', (2,)), ('s', 'S4')]` with tIndex 1, 2, 3, x0 0.5, 1.5, 2.5 and s
/// 'ab', 'cd', 'ef' (numpy 2.4; tests/data).
const PROTOCOL2: &[u8] = include_bytes!("data/record_array.pickle");
const PROTOCOL5: &[u8] = include_bytes!("data/record_array_p5.pickle");

#[test]
fn numpy_record_pickles_are_rebuilt_exactly() {
    for body in [PROTOCOL2, PROTOCOL5] {
        let array = read_array(body).expect("a numpy record array");
        assert_eq!(array.rows, 3);
        assert_eq!(array.dtype.itemsize(), 24);
        assert_eq!(
            array.dtype.descr(),
            "[('tIndex', '<i4'), ('fitResults', [('x0', '<f4'), ('y0', '<f4')]), \
             ('v', '<f4', (2,)), ('s', '|S4')]"
        );
        let row = |i: usize| &array.data[i * 24..(i + 1) * 24];
        assert_eq!(&row(1)[0..4], &2i32.to_le_bytes());
        assert_eq!(&row(2)[4..8], &2.5f32.to_le_bytes());
        assert_eq!(&row(0)[20..24], b"ab\0\0");
        // Through .npy and back: the same array.
        let npy = write_npy(&array.dtype, array.rows, &array.data);
        let back = read_npy(&npy).expect("our .npy reads back");
        assert_eq!(back, array);
    }
}

#[test]
fn every_other_global_is_refused() {
    // pickle.dumps of an object whose __reduce__ is (os.system, ('touch x',)).
    let system = b"\x80\x04\x95\x22\x00\x00\x00\x00\x00\x00\x00\x8c\x05posix\x94\x8c\x06system\x94\x93\x94\x8c\x07touch x\x94\x85\x94R\x94.";
    match read(system) {
        Err(PickleError::Refused(reason)) => assert!(reason.contains("posix.system"), "{reason}"),
        other => panic!("os.system was not refused: {other:?}"),
    }
    // builtins.eval by GLOBAL, protocol 2.
    let eval = b"\x80\x02cbuiltins\neval\nX\x04\x00\x00\x001+1a\x85R.";
    assert!(matches!(read(eval), Err(PickleError::Refused(_))));
    // NEWOBJ makes nothing but PYME's fit result container, and that without arguments.
    assert!(matches!(
        read(b"\x80\x02cbuiltins\nobject\n)\x81."),
        Err(PickleError::Refused(_))
    ));
    let with_args = b"\x80\x02cPYME.localization.remFitBuf\nfitResult\nK\x01\x85\x81.";
    assert!(matches!(read(with_args), Err(PickleError::Refused(_))));
    // An object array: dtype('O8') refused where the dtype is made.
    let object = b"\x80\x02cnumpy\ndtype\nX\x02\x00\x00\x00O8\x89\x88\x87R.";
    assert!(matches!(read(object), Err(PickleError::Refused(r)) if r.contains("object")));
}

#[test]
fn pickled_bytes_are_bytes() {
    // pickle.dumps(b'abc', 2): _codecs.encode('abc', 'latin1'); and protocol 3: BINBYTES.
    let p2 = b"\x80\x02c_codecs\nencode\nq\x00X\x03\x00\x00\x00abcq\x01X\x06\x00\x00\x00latin1q\x02\x86q\x03Rq\x04.";
    assert_eq!(read(p2), Ok(Pickled::Bytes(b"abc".to_vec())));
    let p3 = b"\x80\x03C\x03abcq\x00.";
    assert_eq!(read(p3), Ok(Pickled::Bytes(b"abc".to_vec())));
}

#[test]
fn protocol0_values_as_pytables_pickles_them() {
    // pickle.dumps({'a': [1, 2.5, 'x'], 'b': None}, 0) as Python 3.11 writes it.
    let body = b"(dp0\nVa\np1\n(lp2\nI1\naF2.5\naVx\np3\nasVb\np4\nNs.";
    let value = read_protocol0(body).expect("plain values");
    assert_eq!(value, serde_json::json!({"a": [1, 2.5, "x"], "b": null}));
    assert_eq!(read_protocol0(b"cos\nsystem\n(Vtrue\ntR."), None);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_bytes_are_refused_or_read_never_a_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = read(&body);
        let _ = read_npy(&body);
        let _ = read_protocol0(&body);
    }

    #[test]
    fn mutated_numpy_pickles_never_panic(
        at in 0usize..PROTOCOL2.len(),
        byte in any::<u8>(),
        cut in 0usize..=PROTOCOL2.len(),
        p5 in any::<bool>(),
    ) {
        let source = if p5 { PROTOCOL5 } else { PROTOCOL2 };
        let mut body = source.to_vec();
        let at = at % body.len();
        body[at] = byte;
        body.truncate(cut.min(body.len()));
        if let Ok(Pickled::Array(array)) = read(&body) {
            // Whatever is accepted is consistent.
            prop_assert_eq!(array.data.len(), array.rows * array.dtype.itemsize());
            prop_assert!(array.dtype.validate().is_ok());
        }
    }
}

/// Runs `f` on a thread with the default stack of a spawned thread (2 MiB, as the
/// data server's connection threads have): a recursion as deep as the input overflows
/// it and aborts the whole process, which is what these tests look for.
fn on_a_server_sized_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap()
}

/// Hostile round 3: a million nested tuples (`N`, then `TUPLE1` a million times, one
/// byte a level) are refused, not a stack overflow when the nest is dropped.
#[test]
fn deeply_nested_tuples_are_refused_not_a_stack_overflow() {
    let mut body = vec![0x80, 2, b'N'];
    body.extend(std::iter::repeat_n(0x85u8, 1_000_000));
    body.push(b'.');
    // The same with every level also kept in the memo (`MEMOIZE`), so that levels
    // are dropped in the memo's order, shared or not.
    let mut memoized = vec![0x80, 4, b'N'];
    for _ in 0..500_000 {
        memoized.extend_from_slice(&[0x85, 0x94]);
    }
    memoized.push(b'.');
    for body in [body, memoized] {
        let result = on_a_server_sized_stack(move || read(&body).map(drop));
        assert!(matches!(result, Err(PickleError::Refused(_))), "{result:?}");
    }
}

/// Hostile round 3: lists nested a million deep (`]` a million times, then `a` to
/// put each into the one below) and dicts (`}` and `s`) are refused, not a stack
/// overflow.
#[test]
fn deeply_nested_lists_and_dicts_are_refused_not_a_stack_overflow() {
    let depth = 500_000;
    let mut lists = vec![0x80, 2];
    lists.extend(std::iter::repeat_n(b']', depth));
    lists.extend(std::iter::repeat_n(b'a', depth - 1));
    lists.push(b'.');
    let mut dicts = vec![0x80, 2];
    for _ in 0..depth {
        dicts.extend_from_slice(b"}N");
    }
    dicts.extend(std::iter::repeat_n(b's', depth - 1));
    dicts.push(b'.');
    for body in [lists, dicts] {
        let result = on_a_server_sized_stack(move || read(&body).map(drop));
        assert!(matches!(result, Err(PickleError::Refused(_))), "{result:?}");
    }
}

/// Hostile round 3: a list that holds itself (through the memo) is refused and
/// nothing walks it for ever.
#[test]
fn a_list_holding_itself_is_refused() {
    let body = b"\x80\x02]q\x00h\x00a.";
    assert!(matches!(read(body), Err(PickleError::Refused(_))));
    let body = b"\x80\x02]q\x00h\x00ah\x00\x85.";
    assert!(matches!(read(body), Err(PickleError::Refused(_))));
}

/// Hostile round 3: protocol 0 (HDF5 attributes, read back by `Metadata.json`): a
/// memo entry copied twice into a list, 40 times over, is 2^40 values if every copy
/// is deep ("billion laughs"); refused, memory bounded.
#[test]
fn protocol0_memo_copies_cannot_blow_up() {
    let mut body = b"Np0\n".to_vec();
    for level in 0..40 {
        body.extend_from_slice(format!("(g{level}\ng{level}\nlp{}\n", level + 1).as_bytes());
    }
    body.push(b'.');
    let result = on_a_server_sized_stack(move || read_protocol0(&body).is_some());
    assert!(!result, "a value of 2^40 parts was rebuilt");
}

/// Hostile round 3: protocol 0 lists nested as deep as its stack bound allows are
/// refused or read, not a stack overflow when dropped.
#[test]
fn protocol0_deep_nesting_is_not_a_stack_overflow() {
    let depth = 99_000;
    let mut body = Vec::new();
    body.extend(std::iter::repeat_n(b'(', depth));
    body.extend(std::iter::repeat_n(b'l', depth));
    body.push(b'.');
    on_a_server_sized_stack(move || drop(read_protocol0(&body)));
}

/// Hostile round 3: protocol 0: `p` copies the top of the stack into the memo; a list
/// of 50 000 values copied 300 000 times (3 bytes each) is refused, not 15 billion
/// copies.
#[test]
fn protocol0_memo_puts_cannot_blow_up() {
    let mut body = b"(".to_vec();
    for _ in 0..50_000 {
        body.extend_from_slice(b"N");
    }
    body.extend_from_slice(b"l");
    for _ in 0..300_000 {
        body.extend_from_slice(b"p0\n");
    }
    body.push(b'.');
    let result = on_a_server_sized_stack(move || read_protocol0(&body).is_some());
    assert!(!result, "50 000 values copied 300 000 times");
}
