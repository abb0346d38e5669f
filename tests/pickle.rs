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
