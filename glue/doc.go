// Package glue reads the nine GLUE benchmark tasks (CoLA, SST-2, MRPC,
// STS-B, QQP, MNLI, QNLI, RTE, WNLI) from the standard GLUE directory
// layout and computes the GLUE metrics.
//
// # Reading
//
// [Load] reads <glueDir>/<Task.Dir>/<split>.tsv, for example
// glue/SST-2/train.tsv or glue/MNLI/dev_mismatched.tsv; [Parse] reads the
// same format from any io.Reader. Files are read as plain tab-separated
// lines: a double quote is ordinary text and never CSV quoting (GLUE text
// contains unbalanced quotes). CRLF line endings, a missing final newline,
// a UTF-8 byte order mark (the MRPC header has one) and lines of any length
// are accepted.
//
// Columns are located by header name wherever the file has a header. CoLA
// train and dev files have no header (source, label, star, sentence); the
// CoLA test file has one (index, sentence). Test files in GLUE carry no
// labels: a file whose header lacks the task's label column yields examples
// with Label -1. [Load] insists on the label column for train and dev
// splits, and [Parse] accepts a label-less header only if all its columns
// are ones the task's test file has, so a misspelt label column is an
// error, not a silently unlabeled file. MNLI labels are entailment,
// neutral, contradiction (classes 0, 1, 2, the order of the Hugging Face
// GLUE loader).
//
// A row whose field count differs from the header is resolved by exactly
// one documented rule, and only in files whose label is the last column
// (every labeled GLUE file except CoLA and MRPC): the first field is taken
// as the first column (the index) and the last field as the label, and
// surplus fields in between are dropped if and only if they are empty and
// the non-empty fields in between are exactly as many as the middle
// columns. This reads the RTE train row with index 2164, which has five
// fields ("index, sentence1, sentence2, empty, label"). Every other
// malformed row — wrong field count, unknown label, unparsable or
// out-of-range score, an empty sentence of a single-sentence task or two
// empty texts of a pair, blank line — is an error of type *[ParseError]
// naming the file and line; no row is ever skipped. One empty text of a pair
// is read as it is: real QQP has a few empty questions.
//
// Text is kept exactly as in the file (SST-2 sentences keep their trailing
// space, for example); only the line terminator is removed.
//
// # Metrics
//
// [Evaluate] computes a task's GLUE metrics from predictions and gold
// values; [Accuracy], [F1], [MatthewsCorr], [Pearson] and [Spearman] are
// available on their own. Degenerate inputs never produce NaN: a Matthews
// correlation or a Pearson/Spearman correlation whose denominator is zero
// (for example, all predictions in one class, or constant predictions) is
// 0, and an F1 score with no true positives is 0.
//
// Each task has a primary metric ([Task.Primary]): mcc for CoLA, pearson
// for STS-B (the GLUE paper reports Pearson), acc_and_f1 (the mean of
// accuracy and F1, which is how the GLUE leaderboard averages the two
// numbers it reports) for MRPC and QQP, and accuracy for the others.
//
// [Split] divides examples deterministically (seeded) into two parts, for
// example to cut the QNLI dev set into a training and an evaluation part.
package glue
