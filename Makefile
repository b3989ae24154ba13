# Developer tasks; each is a case of scripts/tasks.sh, which .ci/run
# uses too (so CI needs no make).
.PHONY: deps test check fuzz bench man
deps test check fuzz bench man:
	@scripts/tasks.sh $@
