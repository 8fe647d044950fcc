// Package tokenizer turns text into token ids and back exactly as the
// model was trained, in pure Go.
//
// It reads Hugging Face tokenizer.json files (byte-level BPE as used by
// GPT-2, Llama 3 and Qwen, and SentencePiece-style BPE with byte fallback
// as used by Mistral and converted Llama tokenizers), SentencePiece
// tokenizer.model files (BPE models), and GPT-2 encoder.json + vocab.bpe
// pairs. When a tokenizer_config.json sits next to the tokenizer it is used
// to find the BOS/EOS tokens and whether to add them.
//
// Encoding follows the Hugging Face tokenizers pipeline: added and special
// tokens are split out first (with their lstrip, rstrip, single_word and
// normalized flags), the remaining text is normalized, pre-tokenized and
// handed to the model; a post-processor adds BOS/EOS when asked. The
// common pre-tokenizer regular expressions (GPT-2, Llama 3, Qwen2) run
// through hand-written matchers; any other pattern runs through
// github.com/dlclark/regexp2. SentencePiece models merge by piece score as
// the sentencepiece library does.
//
// Supported tokenizer.json parts: the BPE model (both merges forms,
// byte_fallback, unk_token, fuse_unk, ignore_merges,
// continuing_subword_prefix, end_of_word_suffix; dropout is ignored);
// the normalizers Sequence, NFC, NFD, NFKC, NFKD, Lowercase, Prepend,
// Append, Replace, Strip and StripAccents; the pre-tokenizers Sequence,
// Split, ByteLevel, Metaspace, Whitespace, WhitespaceSplit, Digits,
// Punctuation, BertPreTokenizer and CharDelimiterSplit; the
// post-processors TemplateProcessing, ByteLevel, Roberta/BertProcessing
// and Sequence; the decoders ByteLevel, Metaspace, Replace, ByteFallback,
// Fuse, Strip and Sequence. Anything else is reported as unsupported when
// loading.
//
// Decoding returns raw bytes: byte-level and byte-fallback tokens that do
// not form valid UTF-8 are returned as they are (Hugging Face would put
// U+FFFD there), so that Decode(Encode(x)) gives x back even for invalid
// UTF-8 with byte-level models. Callers that need valid UTF-8 can use
// strings.ToValidUTF8. StreamDecoder never splits a UTF-8 character across
// chunks. Decode with skipSpecial leaves out every special token, also the
// ones matched after normalization that current Hugging Face versions
// keep.
//
// A Tokenizer is safe for concurrent use.
package tokenizer
