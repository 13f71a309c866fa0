#![no_main]

libfuzzer_sys::fuzz_target!(|input: &[u8]| {
    kubemail_fuzz::imap::session(input);
});
