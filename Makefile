# Two commands do all the set-up:  make run  (main job, embedded defaults)  and  make test  (make unit: the fast tier).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
EDGE_AGE_DATA ?= $(abspath ../shared/data/utkface64)
export EDGE_AGE_DATA

IMAGENET ?= $(abspath ../shared/models/imagenet/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5)
REFERENCE_FILES := model.keras qat.h5 MODEL_CARD.md metrics.json config.json curves.png

.PHONY: setup run test unit lint reference family-raw device-figures pipeline-figures quant-figures soak \
	serve-soak ablation members members-table members-bundle pi-check
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[train,test]'
	touch $@

run: setup
	$(BIN)/edge-age data split --out runs/split.csv
	$(BIN)/edge-age convert --split runs/split.csv --out runs/convert

# Both tiers: tests/unit (seconds, no ../shared) and the integration tests on real data (../shared), on
# TEST_WORKERS processes (pytest-xdist; each test file runs whole on one; 0: in this process, as plain pytest).
TEST_WORKERS ?= 2
test: setup
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

# The unit tier alone: names, split rules, metrics, Pareto, tracking, decoding, Edge TPU rules, sidecars (under a minute).
unit: setup
	$(BIN)/python -m pytest -q tests/unit

lint: setup
	$(BIN)/ruff check .

# The wheel a device installs (runtime only unless an extra is asked for), built offline into dist/.
.PHONY: wheel
wheel: setup
	rm -rf dist
	$(BIN)/pip wheel --no-deps --no-build-isolation --no-index -q -w dist .

# Reproduce the bundled reference model (float + QAT) on EDGE_AGE_DATA and copy it into the package.
reference: setup
	$(BIN)/edge-age data split --out runs/split.csv
	$(BIN)/edge-age train --preset reference --data $(EDGE_AGE_DATA) --split runs/split.csv \
		--weights $(IMAGENET) --out runs/reference $(if $(wildcard runs/reference/config.json),--resume)
	cd runs/reference && cp $(REFERENCE_FILES) $(CURDIR)/edge_age/reference/

# Each member on raw-like photos (detect with YuNet, align, crop at the chips' resolution) against the same faces as chips.
family-raw: setup
	$(BIN)/edge-age data photos $(UTK200) --split runs/split.csv --out runs/family-raw/photos
	for m in $(MEMBERS); do \
	  $(BIN)/edge-age evaluate $$m --data $(EDGE_AGE_DATA) --labels runs/family-raw/photos/chips.csv \
	    --json runs/family-raw/chips_$$m.json || exit 1; \
	  $(BIN)/edge-age evaluate $$m --data runs/family-raw/photos --labels runs/family-raw/photos/labels.csv --detect \
	    --detector yunet --json runs/family-raw/raw_$$m.json || exit 1; done

# Figures of the device runner on this machine: pipeline fps and per-stage p50 at 640x480 with 1 and 4 faces
# for each detector and model, and accuracy on raw-like photos (detect + align) against the ready-made chips.
UTK200 ?= $(abspath ../shared/data/utkface_part1_200)
export EDGE_AGE_YUNET ?= $(abspath ../shared/models/yunet/face_detection_yunet_2023mar.onnx)
DEVICE_MODELS ?= int8-qat int8 float32
DETECTORS ?= yunet blazeface haar
device-figures: setup
	$(BIN)/edge-age data video $(UTK200) --split runs/split.csv --faces 1 --frames 150 --out runs/device/faces1.avi
	$(BIN)/edge-age data video $(UTK200) --split runs/split.csv --faces 4 --no-churn --frames 150 --out runs/device/faces4.avi
	for n in 1 4; do for d in $(DETECTORS); do for m in $(DEVICE_MODELS); do \
	  $(BIN)/edge-age run -m runs/convert/age_gender_$$m.tflite -s runs/device/faces$$n.avi --detector $$d \
	    --threads 2 -o runs/device/$${n}faces_$${d}_$${m} --video runs/device/$${n}faces_$${d}_$${m}/annotated.avi \
	    || exit 1; done; done; done
	$(BIN)/edge-age run-table runs/device/*/run_report.json -o runs/device/pipeline.md
	$(BIN)/edge-age data photos $(UTK200) --split runs/split.csv --out runs/device/raw_test
	for m in $(DEVICE_MODELS); do \
	  $(BIN)/edge-age evaluate runs/convert/age_gender_$$m.tflite --data $(UTK200) --labels runs/device/raw_test/chips.csv \
	    --json runs/device/chips200_$${m}.json || exit 1; \
	  $(BIN)/edge-age evaluate runs/convert/age_gender_$$m.tflite --data $(EDGE_AGE_DATA) --labels runs/device/raw_test/chips.csv \
	    --json runs/device/chips64_$${m}.json || exit 1; \
	  for d in $(DETECTORS); do $(BIN)/edge-age evaluate runs/convert/age_gender_$$m.tflite --data runs/device/raw_test \
	    --labels runs/device/raw_test/labels.csv --detect --detector $$d --json runs/device/raw_$${m}_$${d}.json || exit 1; done; done

# Figures of the fast pipeline (issue 15), into $(PIPELINE_OUT)/pipeline.md: fps and per-stage p50 for each
# detector at every --detect-size and --detect-every, with 1 and 4 faces (640x480, 2 threads); the annotated
# video with and without --overlap; MAE on raw photos at each detect size; a sustained bench of the default
# model. About 35 minutes on 2 cores. A quick look: make pipeline-figures DETECT_SIZES="0 320" DETECT_EVERYS="1 3"
# PIPELINE_FRAMES=30 PIPELINE_PHOTOS=20 BENCH_DURATION=20
PIPELINE_OUT ?= runs/pipeline
PIPELINE_MODEL ?= s
PIPELINE_DETECTORS ?= $(DETECTORS)
DETECT_SIZES ?= 0 480 320 240
DETECT_EVERYS ?= 1 2 3 5
PIPELINE_FACES ?= 1 4
PIPELINE_FRAMES ?= 300
PIPELINE_PHOTOS ?=
BENCH_DURATION ?= 600
SPLIT ?= runs/split.csv
pipeline-figures: setup
	for n in $(PIPELINE_FACES); do $(BIN)/edge-age data video $(UTK200) --split $(SPLIT) --faces $$n --no-churn \
	  --frames $(PIPELINE_FRAMES) --out $(PIPELINE_OUT)/faces$$n.avi || exit 1; done
	for n in $(PIPELINE_FACES); do for d in $(PIPELINE_DETECTORS); do for s in $(DETECT_SIZES); do for e in $(DETECT_EVERYS); do \
	  $(BIN)/edge-age run -m $(PIPELINE_MODEL) -s $(PIPELINE_OUT)/faces$$n.avi --detector $$d --detect-size $$s \
	    --detect-every $$e --threads 2 -o $(PIPELINE_OUT)/runs/$${n}f_$${d}_$${s}_$${e} || exit 1; done; done; done; done
	for d in $(PIPELINE_DETECTORS); do for o in no-overlap overlap; do \
	  $(BIN)/edge-age run -m $(PIPELINE_MODEL) -s $(PIPELINE_OUT)/faces1.avi --detector $$d --threads 2 --$$o \
	    --video $(PIPELINE_OUT)/overlap/$${d}_$$o/annotated.avi -o $(PIPELINE_OUT)/overlap/$${d}_$$o || exit 1; done; done
	$(BIN)/edge-age data photos $(UTK200) --split $(SPLIT) $(if $(PIPELINE_PHOTOS),--count $(PIPELINE_PHOTOS)) \
	  --out $(PIPELINE_OUT)/raw_test
	for d in $(PIPELINE_DETECTORS); do for s in $(DETECT_SIZES); do \
	  $(BIN)/edge-age evaluate $(PIPELINE_MODEL) --data $(PIPELINE_OUT)/raw_test --labels $(PIPELINE_OUT)/raw_test/labels.csv \
	    --detect --detector $$d --detect-size $$s --json $(PIPELINE_OUT)/raw/$${d}_$$s.json || exit 1; done; done
	$(BIN)/edge-age bench $(PIPELINE_MODEL) --duration $(BENCH_DURATION) --threads 2 --out $(PIPELINE_OUT)/bench
	$(BIN)/python -m edge_age.report.pipeline_figures $(PIPELINE_OUT)

# The quantization workbench on the default member (s, as `make members` leaves it) and the project's split: every target with its per-layer error
# (int16x8 validated on INT16X8_FACES faces: its reference kernels take about 40 ms a face), int8-mixed at each of
# BUDGETS, then int16x8 against int8 and float32 timed with 1 and 2 threads on the CPU, the only delegate here that
# runs it. About 30 to 40 minutes on 2 idle cores (each mixed search verifies up to 24 files on the validation side).
# A quick trial: make quant-figures QUANT_TARGETS=int8,int16x8 BUDGETS=0.1 QUANT_ARGS="--debug-images 20 --calib 50" \
#   INT16X8_FACES=50 QUANT_OUT=runs/quant-try
QUANT_TARGETS ?= float32,float16,dynamic,int8,int8-qat,edgetpu,int16x8
BUDGETS ?= 0.1 0.05 0.02
INT16X8_FACES ?= 500
QUANT_OUT ?= runs/quant
QUANT_MODEL ?= runs/members/s/model.keras
QUANT_ARGS ?=
quant-figures: setup
	$(BIN)/edge-age data split --out runs/split.csv
	$(BIN)/edge-age convert $(QUANT_MODEL) --split runs/split.csv --targets $(QUANT_TARGETS) --int16x8-faces $(INT16X8_FACES) \
		--out $(QUANT_OUT) $(QUANT_ARGS)
	for b in $(BUDGETS); do $(BIN)/edge-age convert $(QUANT_MODEL) --split runs/split.csv --targets int8-mixed --budget $$b \
	  --out $(QUANT_OUT)/budget-$$b $(QUANT_ARGS) || exit 1; done
	files=$$(for t in int16x8 int8 float32; do ls $(QUANT_OUT)/age_gender_$$t.tflite 2>/dev/null; done); \
	$(BIN)/edge-age bench $$files --split runs/split.csv --limit $(INT16X8_FACES) --threads 1,2 --out $(QUANT_OUT)/bench

# The ablation of the training recipe (issue 19): short runs of MobileNetV2 1.0 from ImageNet at ABLATION_SIZE px,
# QAT off, each into $(ABLATION_OUT)/NAME: the control with seeds 0 and 1 (its spread is the noise), then each recipe
# option alone on seed 0; finetune and finetune-distil start from the control's trained model (3 more epochs at a
# third of its learning rate with label sigma 1, without and with the teacher). A finished run (metrics.json) is
# skipped, an unfinished one resumed. Then the table of validation figures, epochs and time:
# $(ABLATION_OUT)/ablation.md and ablation.json. About 9 x 8 x 3 min at 64 px
# here; run it nice'd in the background. A quick trial on a small face folder: make ablation ABLATION_EPOCHS=1
#   ABLATION_SIZE=32 EDGE_AGE_DATA=/tmp/faces ABLATION_SPLIT=/tmp/abl/split.csv ABLATION_TEACHER=/tmp/abl/teacher
#   ABLATION_OUT=/tmp/abl/runs
ABLATION_EPOCHS ?= 8
ABLATION_SIZE ?= 64
ABLATION_OUT ?= runs/ablation
ABLATION_SPLIT ?= runs/split.csv
ABLATION_TEACHER ?= runs/teacher
ABLATION_RUNS ?= control control-seed1 expectation adamw-ema mixup sigma1 sigma3 distil-plain distil-recentred \
	finetune finetune-distil
ABLATION_control :=
ABLATION_control-seed1 := --seed 1
ABLATION_expectation := --expectation-weight 1
ABLATION_adamw-ema := --weight-decay 0.05 --ema 0.999
ABLATION_mixup := --mixup 0.2
ABLATION_sigma1 := --sigma 1
ABLATION_sigma3 := --sigma 3
ABLATION_distil-plain := --soft-targets $(ABLATION_TEACHER)/soft_targets.npz --teacher-weight 0.5
ABLATION_distil-recentred := $(ABLATION_distil-plain) --teacher-target recentred
ABLATION_finetune := --weights $(ABLATION_OUT)/control/model.keras --epochs 3 --lr 3e-4 --sigma 1
ABLATION_finetune-distil := $(ABLATION_finetune) $(ABLATION_distil-plain)
ablation: setup
	$(BIN)/edge-age data split --out $(ABLATION_SPLIT)
	test -f $(ABLATION_TEACHER)/soft_targets.npz || $(BIN)/edge-age teacher edge_age/reference/model.keras \
		--split $(ABLATION_SPLIT) --out $(ABLATION_TEACHER)
	$(foreach r,$(ABLATION_RUNS),test -f $(ABLATION_OUT)/$(r)/metrics.json || $(BIN)/edge-age train --preset s \
	  --input-size $(ABLATION_SIZE) --epochs $(ABLATION_EPOCHS) --qat-epochs 0 --weights $(IMAGENET) \
	  --split $(ABLATION_SPLIT) --out $(ABLATION_OUT)/$(r) $(ABLATION_$(r)) \
	  $$(test -f $(ABLATION_OUT)/$(r)/config.json && echo --resume) || exit 1;)
	$(BIN)/python -m edge_age.report.ablation $(ABLATION_OUT)

# Issue 19's members, one resumable step at a time (nice'd in the background: nohup make members > runs/members.log):
# the teacher's third network (MobileNetV2 1.0 at 128 px, seed 2, 12 epochs: the cosine schedule converges at its end), copied into teachers/ when finished; the teacher
# of TEACHER_NETS averaged over the mirror image, its soft targets (float16) and teacher.json copied into
# teachers/ensemble, the ensemble and each network alone (averaged over the mirror image, in runs/teacher-alone)
# evaluated on the validation and test sides; then each of MEMBERS distilled from it with
# MEMBER_RECIPE and its MEMBER_<name> options (float, then QAT) into runs/members/<name>, those of MIRROR_MEMBERS
# given a mirror-averaged decoding (fit-correction --mirror), and converted on the split.
# A finished step is skipped, a stopped training resumed (at most one epoch lost).
# s is today's m network (MobileNetV2 1.0, 96 px) distilled, as the default must be at least as accurate as today's m
# (16 epochs: teachers/m96-seed1's validation loss was lowest at epoch 15 of its 20, flat after);
# m the same at 128 px, the input of the teacher's best network alone (12 epochs: its cosine schedule converged);
# n MobileNetV2 1.0 cut at its stride-16 layer block_13_expand_relu (ImageNet features kept) at the chips' 64 px.
TEACHER_NETS ?= edge_age/reference/model.keras teachers/m96-seed1/model.keras teachers/m128-seed2/model.keras
TEACHER_FILES := model.keras config.json metrics.json history_float.csv curves.png MODEL_CARD.md device.json
ENSEMBLE ?= runs/teacher3
net = $(notdir $(patsubst %/model.keras,%,$(1)))
MEMBERS ?= s m n
MEMBER_RECIPE ?= --sigma 1
MEMBER_n ?= --preset s --input-size 64 --cut block_13_expand_relu --epochs 30 --qat-epochs 3
MEMBER_s ?= --preset reference --epochs 16 --qat-epochs 2
MEMBER_m ?= --preset reference --input-size 128 --epochs 12 --qat-epochs 2
MIRROR_MEMBERS ?= s m
members: setup
	$(BIN)/edge-age data split --out runs/split.csv
	test -f teachers/m128-seed2/model.keras || { $(BIN)/edge-age train --preset reference --input-size 128 --seed 2 \
	  --epochs 12 --qat-epochs 0 --split runs/split.csv --weights $(IMAGENET) --out runs/teacher/m128-seed2 \
	  $$(test -f runs/teacher/m128-seed2/config.json && echo --resume) && mkdir -p teachers/m128-seed2 && \
	  cp $(addprefix runs/teacher/m128-seed2/,$(TEACHER_FILES)) teachers/m128-seed2/; }
	$(foreach t,$(TEACHER_NETS),test -f runs/teacher-alone/$(call net,$(t))/test.json || { $(BIN)/edge-age teacher $(t) \
	  --split runs/split.csv --out runs/teacher-alone/$(call net,$(t)) && for side in val test; do $(BIN)/edge-age \
	  evaluate runs/teacher-alone/$(call net,$(t))/teacher.keras --split runs/split.csv --subset $$side \
	  --json runs/teacher-alone/$(call net,$(t))/$$side.json || exit 1; done; } || exit 1;)
	test -f teachers/ensemble/soft_targets.npz || { $(BIN)/edge-age teacher $(TEACHER_NETS) --split runs/split.csv \
	  --out $(ENSEMBLE) && for side in val test; do $(BIN)/edge-age evaluate $(ENSEMBLE)/teacher.keras \
	  --split runs/split.csv --subset $$side --json $(ENSEMBLE)/$$side.json || exit 1; done && mkdir -p teachers/ensemble \
	  && cp $(ENSEMBLE)/soft_targets.npz $(ENSEMBLE)/teacher.json $(ENSEMBLE)/val.json $(ENSEMBLE)/test.json \
	  teachers/ensemble/; }
	$(foreach m,$(MEMBERS),test -f runs/members/$(m)/metrics.json || $(BIN)/edge-age train $(MEMBER_$(m)) \
	  $(MEMBER_RECIPE) --soft-targets teachers/ensemble/soft_targets.npz --split runs/split.csv --weights $(IMAGENET) \
	  --out runs/members/$(m) $$(test -f runs/members/$(m)/config.json && echo --resume) || exit 1; \
	  test -f runs/members/$(m)/convert/convert_report.json || { $(if $(filter $(m),$(MIRROR_MEMBERS)),$(BIN)/edge-age \
	  fit-correction runs/members/$(m)/model.keras --split runs/split.csv --mirror &&) $(BIN)/edge-age convert \
	  runs/members/$(m)/model.keras --split runs/split.csv --fit-decoding --out runs/members/$(m)/convert; } || exit 1;)

# The table of issue 19's teacher networks and members for its closing note, into $(TABLE_OUT)/members_table.md and
# .json. Each member's int8-qat file (runs/members/<name>/convert) and today's m file (at commit $(OLD_M_COMMIT),
# which has no run folder) are copied with their sidecars into $(TABLE_OUT)/files/<name>/ (one folder each, so that
# the bench names them apart), timed in ONE bench with 1 and 2 threads and scored on the test split; then the
# table reads the run folders, the conversions and that bench (edge-age members-table --help).
OLD_M_COMMIT ?= 4577d72
TABLE_OUT ?= runs/members-table
TABLE_TEACHERS ?= m96-seed0=edge_age/reference m96-seed1=teachers/m96-seed1 m128-seed2=teachers/m128-seed2
TABLE_MEMBERS ?= $(MEMBERS)
members-table: setup
	$(BIN)/edge-age data split --out runs/split.csv
	rm -rf $(TABLE_OUT)/files && mkdir -p $(TABLE_OUT)/files/m-$(OLD_M_COMMIT)
	for x in tflite json; do git show $(OLD_M_COMMIT):edge_age/family/m/age_gender_int8-qat.$$x \
	  > $(TABLE_OUT)/files/m-$(OLD_M_COMMIT)/age_gender_int8-qat.$$x || exit 1; done
	for m in $(TABLE_MEMBERS); do mkdir -p $(TABLE_OUT)/files/$$m && \
	  cp runs/members/$$m/convert/age_gender_int8-qat.tflite runs/members/$$m/convert/age_gender_int8-qat.json \
	  $(TABLE_OUT)/files/$$m/ || exit 1; done
	$(BIN)/edge-age bench $(TABLE_OUT)/files/*/age_gender_int8-qat.tflite --split runs/split.csv --threads 1,2 --out $(TABLE_OUT)/bench
	$(BIN)/edge-age members-table $(addprefix --teacher ,$(TABLE_TEACHERS)) \
	  $(foreach m,$(TABLE_MEMBERS),--member $(m)=runs/members/$(m):runs/members/$(m)/convert) \
	  --file m-$(OLD_M_COMMIT)=$(TABLE_OUT)/files/m-$(OLD_M_COMMIT)/age_gender_int8-qat.tflite \
	  --bench $(TABLE_OUT)/bench/bench.json --out $(TABLE_OUT)

# Issue 19's members into the package (edge_age/family/<name>), each with its int8-qat file's CPU latency from the
# members-table bench (make members-table first); then each on raw-like photos against the same faces as chips.
members-bundle: setup
	for m in $(MEMBERS); do $(BIN)/edge-age bundle $$m --run runs/members/$$m --converted runs/members/$$m/convert \
	  --bench $(TABLE_OUT)/bench/bench.json || exit 1; done
	$(MAKE) family-raw

# Soak (not part of make test): SOAK_SECONDS of 'edge-age run --loop --serve' on a generated video, capped at SOAK_FPS
# frames per second, with one client reading the MJPEG stream; RSS and open files of the run sampled every 30 s, into
# runs/soak/soak.json and soak.md (RSS growth: the peak of the last 5 minutes against the peak of the 5 after the
# first, under 5 MiB; the floor of open files not rising; frames, fps; exit 1 otherwise). A quick check:
# make soak SOAK_SECONDS=90
SOAK_SECONDS ?= 3600
SOAK_FPS ?= 10
soak: setup
	$(BIN)/python -m edge_age.bench.soak --seconds $(SOAK_SECONDS) --max-fps $(SOAK_FPS) --data $(UTK200) --out runs/soak

# Serve soak (not part of make test): SOAK_SECONDS of 'edge-age serve' with SERVE_SOAK_CLIENTS clients of the load tool
# (firmware_host/serve/load.py) posting a face photo; RSS and open files of the server, answers per second and errors
# every 30 s, into runs/serve-soak/serve-soak.json and serve-soak.md (RSS growth after the first minute under 5 MiB,
# open files flat, 0 errors; exit 1 otherwise). A quick check: make serve-soak SOAK_SECONDS=120
SERVE_SOAK_CLIENTS ?= 4
serve-soak: setup
	$(BIN)/python -m edge_age.bench.serve_soak --seconds $(SOAK_SECONDS) --clients $(SERVE_SOAK_CLIENTS) --data $(UTK200) \
		--out runs/serve-soak

# The wheel on Linux arm64, emulated (not part of make test; needs root, debootstrap, qemu-user-static and the
# network: see docs/pi-check.md). In a Debian bookworm arm64 root filesystem (made once, about 4 minutes, kept in
# runs/pi-check/bookworm-arm64): evaluate of each member's int8-qat file on 500 test faces, predict on 20 photos and
# bench s, against the same on x86; per-face differences and a pass/fail per member in runs/pi-check/pi-check.md.
pi-check: setup
	$(BIN)/edge-age data split --out runs/split.csv
	nice -n 10 $(BIN)/python -m edge_age.bench.pi_check --split runs/split.csv --data $(EDGE_AGE_DATA) \
	  --photos $(UTK200) --yunet $(EDGE_AGE_YUNET) --out runs/pi-check
