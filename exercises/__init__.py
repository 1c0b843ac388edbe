"""你要完成的两个练习（练习1 streaming.py，练习2 scheduling.py）。说明见 README.md。"""
