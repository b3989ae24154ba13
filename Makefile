# Developer tasks; each is a case of scripts/tasks.sh, which .ci/run
# uses too (so CI needs no make).
.PHONY: test check fuzz bench
test check fuzz bench:
	@scripts/tasks.sh $@
