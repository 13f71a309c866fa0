#![no_main]

libfuzzer_sys::fuzz_target!(init: kubemail_fuzz::mime::tolerate_parser_panics(), |input: &[u8]| {
    kubemail_fuzz::mime::structure(input);
});
