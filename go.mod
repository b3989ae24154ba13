module fanmail

go 1.26.8
