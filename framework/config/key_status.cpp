// The key status table: for every key, the test of its effect or the feature it waits for.
// A key whose feature is not built is refused by rules.cpp at any value but its default;
// docs/config.md says "not yet available" beside each refused key.
#include "framework/config/key_status.h"

#include "framework/config/config.h"

namespace strand::config {
namespace {

constexpr KeyState kOn = KeyState::Implemented;
constexpr KeyState kOff = KeyState::Refused;

constexpr KeyStatus kStatuses[] = {
    {"run.name", kOn, "InspectExportTest.InspectPrintsConfigStepAndParameterTable"},
    {"run.dir", kOn, "TrainerTest.MetricsJsonlHasEveryFieldOnEveryLoggedStep"},
    {"run.seed", kOn, "BuildModel.BuildsEachArchitectureFromRunSeed"},
    {"run.device", kOn, "TrainerTest.RunDeviceCudaWithoutAGpuIsOneConfigError"},

    {"model.arch", kOn, "BuildModel.BuildsEachArchitectureFromRunSeed"},
    {"model.vocab_size", kOn, "Gpt.UntrainedLossIsLogVocab"},
    {"model.n_layer", kOn, "Gpt.ParameterNamesAndShapesAreHuggingFaceGpt2"},
    {"model.n_head", kOn, "Gpt.EveryOptionRunsForwardAndBackward"},
    {"model.n_kv_head", kOn, "Gpt.LossGradientsMatchFiniteDifferencesInFloat64"},
    {"model.d_model", kOn, "Gpt2Small.Has124439808Parameters"},
    {"model.d_ff", kOn, "Gpt2Small.Has124439808Parameters"},
    {"model.max_seq_len", kOn, "Gpt.PositionsAreGlobal"},
    {"model.pos", kOn, "Gpt.LossGradientsMatchFiniteDifferencesInFloat64"},
    {"model.norm", kOn, "Gpt.LossGradientsMatchFiniteDifferencesInFloat64"},
    {"model.activation", kOn, "Gpt.LossGradientsMatchFiniteDifferencesInFloat64"},
    {"model.tie_embeddings", kOn, "Gpt.ParameterNamesAndShapesAreHuggingFaceGpt2"},
    {"model.dropout", kOn, "Gpt.DropoutIsSeededByStepAndOffInEvaluation"},
    {"model.attention.pattern", kOn, "Gpt.NoPatternReadsLaterTokens"},
    {"model.attention.window", kOn, "Gpt.NoPatternReadsLaterTokens"},
    {"model.attention.dilation", kOn, "Gpt.NoPatternReadsLaterTokens"},
    {"model.attention.global_tokens", kOn, "Gpt.LossGradientsMatchFiniteDifferencesInFloat64"},
    {"model.attention.block_size", kOn, "AttentionMask.BigBirdRandomBlocksAgreeAcrossBlocksOfTheSequence"},
    {"model.attention.random_blocks", kOn, "AttentionMask.BigBirdRandomBlocksAgreeAcrossBlocksOfTheSequence"},

    {"data.format", kOn, "MakeLoader.BuildsEachFormatAndNamesBadKeys"},
    {"data.train", kOn, "MakeLoader.BuildsEachFormatAndNamesBadKeys"},
    {"data.val", kOn, "MakeLoader.BuildsEachFormatAndNamesBadKeys"},
    {"data.tokenizer", kOn, "RunTokenizer.AutoFindsTheSentencePieceModelBesideTheShardsElseBytes"},
    {"data.task", kOn, "TrainerTest.EvaluationCountsAnswersOverEvalBatches"},
    {"data.seq_len", kOn, "Loader.RowRuleMatchesManualSlicing"},
    {"data.batch_size", kOn, "TrainerTest.LossIsNormalisedByTheTokensOfTheWholeStep"},
    {"data.shuffle", kOn, "Loader.ShuffleReadsEachRowOncePerEpochInAnotherOrderEachEpoch"},

    {"parallel.dp", kOn, "ResumeDpTest.TwoRankLossAndGradNormEqualTheOneProcessOnesOfTheSameRows"},
    {"parallel.sp", kOn, "SpTrainTest.RingZigzagOverFourRanks"},
    {"parallel.sp_mode", kOn, "SpTrainTest.UlyssesOverFourRanks"},
    {"parallel.ulysses_degree", kOn, "SpTrainTest.HybridTwoByTwo"},
    {"parallel.layout", kOn, "SpTrainTest.RingContiguousOverTwoRanks"},
    {"parallel.backend", kOn, "TrainerTest.RefusesTheNcclBackendForCpuModels"},
    {"parallel.bucket_mb", kOn, "GradSync.SumsOverRanksWithBucketsStartedDuringBackward"},
    {"parallel.timeout_s", kOn, "StopJob.AStoppedRankEndsTheJobAfterTheTimeout"},
    {"parallel.grad_dtype", kOn, "GradSync.Bf16WireRoundsEachRanksGradientAndEveryPartialSum"},

    {"train.steps", kOn, "TrainerTest.ResumingAFinishedRunDoesNothing"},
    {"train.lr", kOn, "TrainerTest.MetricsJsonlHasEveryFieldOnEveryLoggedStep"},
    {"train.min_lr", kOn, "LrSchedule.CosineDecaysToMinLr"},
    {"train.warmup_steps", kOn, "LrSchedule.WarmupIsLinearFromZero"},
    {"train.schedule", kOn, "TrainerTest.MetricsJsonlHasEveryFieldOnEveryLoggedStep"},
    {"train.weight_decay", kOn, "AdamW.WeightDecayIsDecoupledFromTheGradient"},
    {"train.betas", kOn, "AdamW.ThreeStepsMatchTheFormulaFloat64"},
    {"train.grad_clip", kOn, "ClipGradNorm.ScalesWhenAboveThreshold"},
    {"train.grad_accum", kOn, "TrainerTest.LossIsNormalisedByTheTokensOfTheWholeStep"},
    {"train.max_skipped_steps", kOn, "TrainerTest.ARunWhoseGradientsStayNonFiniteStops"},
    {"train.log_every", kOn, "TrainerTest.MetricsJsonlHasEveryFieldOnEveryLoggedStep"},
    {"train.sample_every", kOn, "TrainSample.PrintsATextSampleEverySampleEverySteps"},
    {"train.eval_every", kOn, "TrainerTest.MetricsJsonlHasEveryFieldOnEveryLoggedStep"},
    {"train.eval_batches", kOn, "TrainerTest.EvaluationCountsAnswersOverEvalBatches"},

    {"precision.compute", kOn, "MixedPrecision.Bf16AndFp16LossesStayCloseToFp32"},
    {"precision.loss_scale", kOn, "MixedPrecision.AFixedScaleMultipliesTheLossAndIsDividedOutOfTheGradients"},
    {"precision.scale_window", kOn, "MixedPrecision.DynamicScaleDoublesAfterTheWindowAndHalvesOnOverflow"},

    {"memory.checkpointing", kOn, "Checkpointing.FullAndSelectiveGiveTheGradientsOfThePlainRunBitForBit"},
    {"memory.checkpoint_layers", kOn, "Checkpointing.CheckpointLayersChecksTheFirstKBlocks"},
    {"memory.offload", kOn, "Offload.DiskOffloadGivesTheSameLossAndGradientsBitForBit"},
    {"memory.loss_chunk", kOn, "ChunkedLoss.GptLossAndGradientsMatchTheUnchunkedHead"},
    {"memory.offload_min_bytes", kOn, "Offload.SmallTensorsStayInMemory"},
    {"memory.offload_dir", kOn, "Offload.SpillFilesAreGoneAfterTheRunAndAfterAnError"},
    {"memory.offload_gradients", kOn, "Offload.OffloadedGradientsGiveTheSameGradientsAndStepsBitForBit"},

    {"checkpoint.dir", kOn, "TrainerTest.ResumeFromStepFileMatchesStraightRunBitForBit"},
    {"checkpoint.every", kOn, "TrainerTest.ResumeFromStepFileMatchesStraightRunBitForBit"},
    {"checkpoint.keep", kOn, "CheckpointTest.DirectoryKeepsTheNewestAndPointsLatestAtThem"},
    {"checkpoint.resume", kOn, "CheckpointTest.ResumeAutoNoneExplicitAndMissing"},

    {"distill.teacher", kOn, "Distill.TheTeacherIsFrozenAndNotInTheStudentCheckpoint"},
    {"distill.temperature", kOn, "DistillLoss.ValueMatchesTheMaterialisedReference"},
    {"distill.alpha", kOn, "Distill.AlphaOneIsTheTrainLossAndAlphaZeroTheDistillationTerm"},
    {"distill.attention_weight", kOn, "Distill.AttentionTransferAddsItsTermToTheLoss"},
    {"distill.attention_layers", kOn, "Distill.AttentionLayersPairsTheNamedLayers"},
    {"distill.attention_rows", kOn, "Distill.AttentionRowsScoresTheDrawnRowsAndEveryRowIsTheAllRowsTerm"},
    {"distill.hidden_weight", kOn, "Distill.HiddenTermTrainsTheProjectionAndResumesExactly"},
    {"distill.hidden_layers", kOn, "Distill.HiddenLayersPairsTheNamedLayers"},
    {"distill.init_from_teacher", kOn, "Distill.InitFromTeacherCopiesEveryKthLayer"},

    {"prune.heads_fraction", kOn, "PruneChoice.RemovesTheLowestScoringFractionOfHeadsGlobally"},
    {"prune.iterations", kOn, "Prune.IterationsRescoreBetweenRounds"},
    {"prune.importance_batches", kOn, "HeadImportance.AccumulatesAbsoluteGateGradientsOverBatches"},
    {"prune.finetune_steps", kOn, "Prune.FinetunesAfterEachRound"},
    {"prune.method", kOn, "Prune.RandomMethodIsSeeded"},
    {"prune.seed", kOn, "Prune.RandomMethodIsSeeded"},
};

}  // namespace

std::span<const KeyStatus> key_statuses() { return kStatuses; }

const KeyStatus& key_status(const std::string& key) {
  for (const KeyStatus& s : kStatuses)
    if (key == s.key) return s;
  throw ConfigError("key '" + key + "': has no entry in the key status table (framework/config/key_status.cpp)");
}

}  // namespace strand::config
