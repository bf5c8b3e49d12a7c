# bash completion for migratectl(8)                        -*- shell-script -*-
#
# Commands and options are those of `migratectl --help`; domain names and
# migration ids are asked from the daemon (`migratectl --json list` and
# `migratectl --json status`), quietly, when the socket is reachable.

_migratectl_json_values()
{
	# stdin: JSON; $1: a key; prints its string or integer values.
	grep -o '"'"$1"'":"\{0,1\}[^",}]*' | sed 's/^[^:]*:"\{0,1\}//'
}

_migratectl()
{
	local cur prev words cword
	if declare -F _init_completion >/dev/null 2>&1; then
		_init_completion || return
	else
		COMPREPLY=()
		cur=${COMP_WORDS[COMP_CWORD]}
		prev=${COMP_WORDS[COMP_CWORD-1]}
		words=("${COMP_WORDS[@]}")
		cword=$COMP_CWORD
	fi

	local commands="list migrate status wait cancel set-bandwidth advise index
	    index-sync"
	local globals="--control --json --help --version"
	local migrate_opts="--dedup --paused --verify --wait --downtime-ms
	    --max-iterations --bandwidth --auto-converge --compress --zero-pages
	    --streams --order"

	case $prev in
	--control)
		compopt -o filenames 2>/dev/null
		COMPREPLY=($(compgen -f -- "$cur"))
		return
		;;
	--dedup)
		COMPREPLY=($(compgen -W "none shared all" -- "$cur"))
		return
		;;
	--compress)
		COMPREPLY=($(compgen -W "none zstd lz4" -- "$cur"))
		return
		;;
	--zero-pages)
		COMPREPLY=($(compgen -W "elide send" -- "$cur"))
		return
		;;
	--order)
		COMPREPLY=($(compgen -W "unique-first pfn" -- "$cur"))
		return
		;;
	--downtime-ms|--max-iterations)
		return
		;;
	--streams)
		COMPREPLY=($(compgen -W "1 2 3 4 5 6 7 8" -- "$cur"))
		return
		;;
	--bandwidth)
		# RATE: bytes per second, K/M/G = binary multiples.
		COMPREPLY=($(compgen -W "0 1M 10M 100M 1G" -- "$cur"))
		return
		;;
	esac

	# The command and its positional arguments; keep --control for
	# asking the daemon.
	local i cmd="" ctl=() npos=0
	for ((i = 1; i < cword; i++)); do
		case ${words[i]} in
		--control)
			ctl=(--control "${words[i+1]}")
			((i++))
			;;
		--control=*)
			ctl=("${words[i]}")
			;;
		--dedup|--downtime-ms|--max-iterations|--bandwidth|--compress|--zero-pages|--streams|--order)
			((i++))
			;;
		-*)
			;;
		*)
			if [[ -z $cmd ]]; then
				cmd=${words[i]}
			else
				((npos++))
			fi
			;;
		esac
	done

	if [[ $cur == -* ]]; then
		case $cmd in
		migrate) COMPREPLY=($(compgen -W "$migrate_opts $globals" -- "$cur")) ;;
		*) COMPREPLY=($(compgen -W "$globals" -- "$cur")) ;;
		esac
		return
	fi

	case $cmd in
	"")
		COMPREPLY=($(compgen -W "$commands" -- "$cur"))
		;;
	migrate)
		if ((npos == 0)); then
			COMPREPLY=($(compgen -W "$(migratectl "${ctl[@]}" --json \
			    list 2>/dev/null | _migratectl_json_values name)" \
			    -- "$cur"))
		elif ((npos == 1)); then
			# HOST:PORT: host names, with destd's default port.
			compopt -o nospace 2>/dev/null
			COMPREPLY=($(compgen -A hostname -S :8002 -- "$cur"))
		fi
		;;
	advise)
		if ((npos == 0)); then
			COMPREPLY=($(compgen -W "$(migratectl "${ctl[@]}" --json \
			    list 2>/dev/null | _migratectl_json_values name)" \
			    -- "$cur"))
		else
			compopt -o nospace 2>/dev/null
			COMPREPLY=($(compgen -A hostname -S :8002 -- "$cur"))
		fi
		;;
	status|wait|cancel|set-bandwidth)
		if ((npos == 0)); then
			COMPREPLY=($(compgen -W "$(migratectl "${ctl[@]}" --json \
			    status 2>/dev/null | _migratectl_json_values id)" \
			    -- "$cur"))
		fi
		;;
	esac
} &&
	complete -F _migratectl migratectl

# ex: filetype=sh
